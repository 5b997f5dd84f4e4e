"""The simulator's run-time state: control settings, stats and callback delivery.

All of it lives in this process's memory, behind one lock: the simulator is a test
and demo tool, and each process (the portal with the simulator mounted, or a
standalone `run_hive_simulator`) has its own control settings and stats.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "latency_ms": 0,
    "callback_delay_ms": 1000,
    "error_rate": 0.0,
    "error_status": 503,
    "fail_next": 0,
    "text_limit": 1024,
}
# field -> (type, minimum, maximum)
_LIMITS: dict[str, tuple[type, float, float]] = {
    "latency_ms": (int, 0, 600_000),
    "callback_delay_ms": (int, 0, 3_600_000),
    "error_rate": (float, 0.0, 1.0),
    "error_status": (int, 400, 599),
    "fail_next": (int, 0, 1_000_000),
    "text_limit": (int, 1, 1_000_000),
}

# Seconds to wait before each retry of a callback our server did not accept:
# ten attempts over about a minute, like a patient webhook sender.
CALLBACK_BACKOFF = (0.25, 0.5, 1, 2, 4, 8, 12, 15, 15)
CALLBACK_TIMEOUT = (3.0, 10.0)  # connect, read
CALLBACK_WORKERS = 16

_lock = threading.Lock()
_control: dict[str, Any] = dict(DEFAULTS)


def _zero_stats() -> dict[str, Any]:
    return {
        "calls": {"sync": 0, "async": 0},
        "errors_returned": 0,
        "rejected": 0,
        "callbacks": {"scheduled": 0, "sent": 0, "failed_attempts": 0, "given_up": 0},
    }


_stats: dict[str, Any] = _zero_stats()


class ControlError(ValueError):
    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


# --- Control -------------------------------------------------------------------


def control() -> dict[str, Any]:
    with _lock:
        return dict(_control)


def update_control(changes: Any) -> dict[str, Any]:
    """Apply any subset of the control fields (all validated before any is applied)."""
    if not isinstance(changes, dict):
        raise ControlError("body", "must be a JSON object")
    reset_requested = changes.get("reset", False)
    if not isinstance(reset_requested, bool):
        raise ControlError("reset", "must be true or false")
    clean = {name: _validate(name, value) for name, value in changes.items() if name != "reset"}
    if reset_requested:
        reset()
    with _lock:
        _control.update(clean)
        return dict(_control)


def _validate(name: str, value: Any) -> int | float:
    if name not in _LIMITS:
        raise ControlError(name, f"unknown field; expected one of {', '.join(DEFAULTS)} or reset")
    kind, low, high = _LIMITS[name]
    # bool is an int in Python; `true` is never a valid number here.
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or (kind is int and not float(value).is_integer()):
        raise ControlError(name, f"must be {'an integer' if kind is int else 'a number'}")
    if not low <= value <= high:
        raise ControlError(name, f"must be between {low} and {high}")
    return kind(value)


def reset() -> None:
    """Defaults back and stats to zero. Callbacks already scheduled still go out."""
    with _lock:
        _control.clear()
        _control.update(DEFAULTS)
        _stats.clear()
        _stats.update(_zero_stats())


# --- Stats -----------------------------------------------------------------------


def stats() -> dict[str, Any]:
    with _lock:
        return {
            "calls": dict(_stats["calls"]),
            "errors_returned": _stats["errors_returned"],
            "rejected": _stats["rejected"],
            "callbacks": dict(_stats["callbacks"]),
            "control": dict(_control),
        }


def count_call(mode: str) -> None:
    with _lock:
        _stats["calls"][mode] += 1


def count_rejected() -> None:
    with _lock:
        _stats["rejected"] += 1


def _count_callback(what: str) -> None:
    with _lock:
        _stats["callbacks"][what] += 1


def injected_error() -> int | None:
    """The status this call must answer instead of working, if any (fail_next, error_rate)."""
    with _lock:
        if _control["fail_next"] > 0:
            _control["fail_next"] -= 1
        elif not (_control["error_rate"] and random.random() < _control["error_rate"]):
            return None
        _stats["errors_returned"] += 1
        return _control["error_status"]


# --- Callbacks -------------------------------------------------------------------


@dataclass
class Callback:
    """One POST to a callback URL, plus what follows it (the manual review verdict)."""

    url: str
    body: dict[str, Any]
    attempt: int = 0
    then: list[dict[str, Any]] = field(default_factory=list)


class Dispatcher:
    """Delivers callbacks in the background: never inside the request that asked.

    One scheduler thread keeps a heap of due times (so waiting costs no worker); a
    small pool of daemon workers does the POSTs. Retries go back on the heap."""

    def __init__(self, workers: int = CALLBACK_WORKERS):
        self._heap: list[tuple[float, int, Callback]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._due: queue.Queue[Callback] = queue.Queue()
        self._workers = workers
        self._started = False

    def schedule(self, callback: Callback, delay_s: float) -> None:
        with self._wake:
            self._start()
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._order), callback))
            self._wake.notify()

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        threading.Thread(target=self._schedule_loop, name="sim-callback-scheduler", daemon=True).start()
        for n in range(self._workers):
            threading.Thread(target=self._work_loop, name=f"sim-callback-{n}", daemon=True).start()

    def _schedule_loop(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wake.wait(timeout)
                _, _, callback = heapq.heappop(self._heap)
            self._due.put(callback)

    def _work_loop(self) -> None:
        session = requests.Session()  # one per thread: Session is not thread-safe
        # A test tool posting to loopback: never route it through an env proxy.
        session.trust_env = False
        while True:
            callback = self._due.get()
            try:
                self._deliver(session, callback)
            except Exception:  # a worker must never die: log and carry on
                log.exception("simulator callback to %s crashed", callback.url)

    def _deliver(self, session: requests.Session, callback: Callback) -> None:
        callback.attempt += 1
        retryable = _post(session, callback)
        if retryable is None:
            _count_callback("sent")
        else:
            _count_callback("failed_attempts")
            if retryable and callback.attempt <= len(CALLBACK_BACKOFF):
                self.schedule(callback, CALLBACK_BACKOFF[callback.attempt - 1])
                return
            _count_callback("given_up")
            log.warning("simulator gave up on callback to %s after %d attempts", callback.url, callback.attempt)
        if callback.then:
            follow = Callback(url=callback.url, body=callback.then[0], then=callback.then[1:])
            self.schedule(follow, control()["callback_delay_ms"] / 1000)


def _post(session: requests.Session, callback: Callback) -> bool | None:
    """None when accepted; else whether it is worth retrying (network, 408, 429, 5xx)."""
    try:
        response = session.post(
            callback.url, json=callback.body, timeout=CALLBACK_TIMEOUT, allow_redirects=False
        )
    except requests.RequestException as exc:
        log.info("simulator callback to %s failed: %s", callback.url, exc)
        return True
    if 200 <= response.status_code < 300:
        return None
    log.info("simulator callback to %s answered %s", callback.url, response.status_code)
    return response.status_code in (408, 429) or response.status_code >= 500


_dispatcher = Dispatcher()


def send_callbacks(url: str, bodies: list[dict[str, Any]]) -> None:
    """POST `bodies` to `url` one after the other, each `callback_delay_ms` after the last."""
    with _lock:
        _stats["callbacks"]["scheduled"] += len(bodies)
    first = Callback(url=url, body=bodies[0], then=list(bodies[1:]))
    _dispatcher.schedule(first, control()["callback_delay_ms"] / 1000)
