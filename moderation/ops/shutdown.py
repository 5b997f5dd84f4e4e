"""A stop of the worker cluster, seen by every worker process.

django-q2 stops a cluster by letting each worker finish the tasks it holds;
a pump holds its slot for up to a minute (dispatch.PUMP_BUDGET_SECONDS),
claiming item after item, so a stop took that long and a supervisor's timeout
killed calls half-way (sent again once their lease ran out). Our `qcluster`
sets this flag when the cluster is told to stop; the pumps and dispatch tasks
then claim nothing more, and the cluster exits after the calls in flight.
What they leave queued is dispatched by the sweep, on this host once it is
back or on any other.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import time

# One byte of shared memory, created in the cluster's main process before it
# forks the sentinel and its workers (django-q2 always forks on Linux, and
# forks the workers it replaces from the sentinel too). Lock-free on purpose: a
# multiprocessing.Event has locks inside, and a worker killed while holding one
# (or while waiting on it) would make setting the flag, in the SIGTERM handler,
# block for ever.
_stopping = None


def prepare() -> None:
    global _stopping
    _stopping = multiprocessing.get_context("fork").RawValue(ctypes.c_bool, False)


def request_stop() -> None:
    if _stopping is not None:
        _stopping.value = True


def stop_requested() -> bool:
    return _stopping is not None and _stopping.value


def pause(seconds: float) -> None:
    """Sleep, cut short (within a tenth of a second) by a stop."""
    deadline = time.monotonic() + seconds
    while not stop_requested():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))
