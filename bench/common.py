"""Shared helpers for the benchmarks: a throwaway database, the real processes."""

from __future__ import annotations

import http.client
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, and never one handed out before in this
    process: another process binds it later, and two such calls must not meet."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def bench_env(workdir: Path, database_url: str | None = None, redis_url: str | None = None, **extra) -> dict:
    """Environment for a throwaway deployment: SQLite + ORM broker unless told otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HIVE_", "Q_"))}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env.update({
        "DJANGO_SETTINGS_MODULE": "hiveportal.settings",
        "DJANGO_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "HIVE_SIMULATOR": "1",
        "ALLOW_PRIVATE_URLS": "1",
        "MEDIA_ROOT": str(workdir / "media"),
        "DATABASE_URL": database_url or f"sqlite:///{workdir / 'bench.sqlite3'}",
        "LOG_LEVEL": "WARNING",
    })
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def fresh_postgres(name: str) -> str:
    for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", sql], check=True)
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def manage(env: dict, *args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)


def setup_django(env: dict) -> None:
    os.environ.update(env)
    import django

    django.setup()


class Process:
    def __init__(self, name: str, args: list[str], env: dict, logdir: Path):
        self.name = name
        self.log = open(logdir / f"{name}.log", "wb")
        self.popen = subprocess.Popen(args, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """`sig` to the main process, as systemd's KillMode=mixed sends it (a
        SIGTERM to each of qcluster's processes hangs it: README "Deploying");
        then SIGKILL to whatever of its process group is left."""
        stop_process_group(self.popen, sig, timeout)
        self.log.close()


def stop_process_group(popen: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """`sig` to the main process and a wait for it (SIGKILL: none, the whole
    group at once); then SIGKILL to whatever of the group is left."""
    if sig != signal.SIGKILL:
        try:
            popen.send_signal(sig)
            popen.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    popen.wait(timeout=10)


def start_simulator(env: dict, logdir: Path) -> tuple[Process, str]:
    port = free_port()
    process = Process("simulator", [PYTHON, "manage.py", "run_hive_simulator", "--port", str(port)], env, logdir)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/stats")
    return process, url


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


_LOCK_PATH = Path(tempfile.gettempdir()) / "hiveportal-bench.lock"
_lock_file = None


def one_benchmark_at_a_time() -> None:
    """Exit if another benchmark is running on this machine: each one's figures
    would be the other's noise, and two runs of one benchmark drop each other's
    database. Held until this process exits."""
    global _lock_file
    if _lock_file is not None:
        return
    import fcntl

    handle = open(_LOCK_PATH, "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another benchmark is running (it holds {_LOCK_PATH}): run them one at a time") from None
    _lock_file = handle


def workdir(name: str) -> Path:
    one_benchmark_at_a_time()
    path = Path(tempfile.mkdtemp(prefix=f"hiveportal-{name}-"))
    (path / "media").mkdir()
    return path


# --- Shared by the HTTP benchmarks (intake_bench.py, callbacks_bench.py) ------------------


def throwaway_backends(db: str, name: str, redis_db: int) -> tuple[str | None, str | None]:
    """(DATABASE_URL, REDIS_URL): None, None for SQLite + ORM broker; for postgres a fresh
    database `name` and Redis db `redis_db` on loopback, flushed."""
    if db != "postgres":
        return None, None
    database_url = fresh_postgres(name)
    redis_url = f"redis://127.0.0.1:6379/{redis_db}"
    import redis

    redis.from_url(redis_url).flushdb()
    return database_url, redis_url


def start_gunicorn(env: dict, logdir: Path, *, workers: int = 2, threads: int = 8, name: str = "web",
                   settings: str = "bench.settings") -> tuple[Process, str]:
    """The product's gunicorn as production starts it (gunicorn.conf.py, read from the
    repository root): `workers` processes x `threads` threads on a free loopback port.
    bench.settings adds the bare comparison views (bench/urls.py). Access log off: it
    costs every request the same and only adds noise."""
    port = free_port()
    env = {**env, "DJANGO_SETTINGS_MODULE": settings, "GUNICORN_BIND": f"127.0.0.1:{port}",
           "WEB_CONCURRENCY": str(workers), "GUNICORN_THREADS": str(threads), "GUNICORN_ACCESS_LOG": "0"}
    process = Process(name, [PYTHON, "-m", "gunicorn", "hiveportal.wsgi"], env, logdir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz")
    except RuntimeError:
        process.stop()
        raise RuntimeError(f"gunicorn did not come up; see {logdir / (name + '.log')}") from None
    return process, url


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank: a value that was actually measured."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Sent:
    """What one burst of requests did: per-request latencies (s), status counts, wall time."""

    latencies: list[float] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # of each latency, in the same order
    codes: list[int] = field(default_factory=list)  # status of each, in the same order
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    def only(self, predicate) -> "Sent":
        """The requests whose path satisfies `predicate`, over the same wall time."""
        kept = [row for row in zip(self.latencies, self.paths, self.codes) if predicate(row[1])]
        return Sent(latencies=[row[0] for row in kept], paths=[row[1] for row in kept],
                    codes=[row[2] for row in kept], statuses=Counter(row[2] for row in kept), seconds=self.seconds)

    def summary(self, name: str) -> str:
        """One line for a benchmark's report: count, wall time, rate, p50 and p99."""
        return (f"  {name}: {self.count} requests in {self.seconds:.1f} s = {self.rate:.0f}/s; "
                f"p50 {percentile(self.latencies, 50) * 1000:.1f} ms, p99 {percentile(self.latencies, 99) * 1000:.1f} ms")

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: "Sent") -> None:
        self.latencies += other.latencies
        self.paths += other.paths
        self.codes += other.codes
        self.statuses.update(other.statuses)
        self.seconds += other.seconds


def post_all(base_url: str, requests_: list[tuple[str, bytes, dict]], threads: int, rate: float = 0) -> Sent:
    """POST every (path, body, headers) from `threads` client threads, each with its own
    keep-alive connection (http.client: little client CPU per request, on a machine the
    server shares). Bodies are built by the caller beforehand. A transport error counts
    as status 0.

    rate = 0: as fast as the threads go (a closed loop: throughput). rate > 0: request
    i is due at i / rate seconds (an open loop, like traffic that does not wait for us),
    and its latency counts from when it was due, so time it spent waiting for a free
    client thread counts too (no "coordinated omission")."""
    parts = urlsplit(base_url)
    host, port = parts.hostname, parts.port
    sent = Sent()
    next_index = iter(range(len(requests_))).__next__
    lock = threading.Lock()
    begin = time.perf_counter()

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=120)
        while True:
            with lock:
                try:
                    index = next_index()
                except StopIteration:
                    break
            path, body, headers = requests_[index]
            started = time.perf_counter()
            if rate > 0:
                started = begin + index / rate
                time.sleep(max(0.0, started - time.perf_counter()))
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    connection.close()
            except (http.client.HTTPException, OSError):
                status = 0
                connection.close()
            latency = time.perf_counter() - started
            with lock:
                sent.latencies.append(latency)
                sent.paths.append(path)
                sent.codes.append(status)
                sent.statuses[status] += 1
        connection.close()

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    sent.seconds = time.perf_counter() - begin
    return sent


def abba(rounds: int) -> list[str]:
    """Round order A B B A A B B A ...: drift over the run (a warming cache, a growing
    table, a neighbour's load) falls on both sides alike."""
    return [("AB" if i % 2 == 0 else "BA")[j] for i in range(rounds) for j in range(2)]
