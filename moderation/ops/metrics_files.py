"""Prometheus multiprocess files of exited processes, folded into one per type.

prometheus_client writes each process's counters and histograms to files named
by its pid in PROMETHEUS_MULTIPROC_DIR, and /metrics sums every file on each
scrape. A process that exits leaves its files behind (its totals must survive
it), so a host whose django-q2 workers recycle every few hundred tasks gathers
thousands of them: scrapes slow down for ever and the directory fills its tmpfs.

Each process that imports our metrics holds a shared lock on `alive_<pid>.lock`
for its whole life, taken again in each forked child (`hold_alive_lock`). A
lock that can be taken exclusively belongs to a process that has exited, in
whatever PID namespace, and a new process that reuses the pid waits for the
compaction to end before it writes a thing. `compact` sums the dead processes'
files into `counter_archive.db` and `histogram_archive.db` under an exclusive
directory lock; /metrics compacts, then reads under the shared one, so a scrape
never counts a total twice or misses one. Files of processes that never took a
lock (started before this ran) are left as they are. The lock is taken in
AppConfig.ready, before any metric is written in this process: our metrics and
django-prometheus's are created on first use, or when the WSGI handler loads.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import re
from contextlib import contextmanager

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger("moderation.metrics")

DIR_LOCK = ".compaction.lock"
# Only counters and histograms sum across processes; we define no gauges, and a
# gauge file (another library's) is left where it is.
SUMMED_TYPES = ("counter", "histogram")
_ALIVE = re.compile(r"alive_(\d+)\.lock$")

_alive_fd: int | None = None
_at_fork_registered = False


def multiproc_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def hold_alive_lock() -> None:
    """Mark this process alive for as long as it runs; again in each child it forks."""
    global _at_fork_registered
    if multiproc_dir() is None or _at_fork_registered:
        return
    _at_fork_registered = True
    os.register_at_fork(after_in_child=_relock_in_child)
    _lock_alive()


def _relock_in_child() -> None:
    global _alive_fd
    if _alive_fd is not None:
        os.close(_alive_fd)  # the parent's lock stays the parent's
        _alive_fd = None
    _lock_alive()


def _lock_alive() -> None:
    global _alive_fd
    path = multiproc_dir()
    if path is None:
        return
    try:
        _alive_fd = _locked(os.path.join(path, f"alive_{os.getpid()}.lock"), fcntl.LOCK_SH)
    except OSError:  # no such directory (yet): the process runs; its files are never folded
        logger.warning("could not mark the process alive for metrics compaction", exc_info=True)


def _locked(lock_path: str, mode: int) -> int:
    """An fd holding `mode` on lock_path, on the file that is still at that path
    (a compaction may delete the lock file of a dead process with our pid)."""
    while True:
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, mode)
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextmanager
def reading(path: str):
    """Hold off compaction while the caller reads the directory."""
    fd = os.open(os.path.join(path, DIR_LOCK), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def compact(path: str) -> int:
    """Fold the files of exited processes into the archives; how many processes."""
    fd = os.open(os.path.join(path, DIR_LOCK), os.O_CREAT | os.O_RDWR, 0o600)
    dead: dict[str, int] = {}
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _find_dead_processes(path, dead)
        for kind in SUMMED_TYPES:
            _fold(path, kind, list(dead))
        # Only now, all folded: a fold that failed leaves the locks, to be tried again.
        for pid in dead:
            os.unlink(os.path.join(path, f"alive_{pid}.lock"))
        return len(dead)
    finally:
        for lock_fd in dead.values():
            os.close(lock_fd)
        os.close(fd)


def _find_dead_processes(path: str, dead: dict[str, int]) -> None:
    """Fill `dead` (pid: fd holding its lock exclusively) as it goes, so that the
    caller closes every fd whatever happens."""
    for lock_path in glob.glob(os.path.join(path, "alive_*.lock")):
        match = _ALIVE.search(lock_path)
        if match is None or match.group(1) == str(os.getpid()):
            continue
        try:
            lock_fd = os.open(lock_path, os.O_RDONLY)
        except OSError:  # gone since the glob, or not ours to read
            continue
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)  # alive
            continue
        dead[match.group(1)] = lock_fd


def _fold(path: str, kind: str, pids: list[str]) -> None:
    files = [f for f in (os.path.join(path, f"{kind}_{pid}.db") for pid in pids) if os.path.exists(f)]
    if not files:
        return
    archive = os.path.join(path, f"{kind}_archive.db")
    sources = files + ([archive] if os.path.exists(archive) else [])
    # Not accumulated: histogram buckets stay per bucket, as each process writes them.
    merged = MultiProcessCollector.merge(sources, accumulate=False)
    building = archive + ".tmp"  # not *.db: a scrape never reads it half-written
    if os.path.exists(building):
        os.unlink(building)
    values = MmapedDict(building)
    try:
        for metric in merged:
            for sample in metric.samples:
                key = mmap_key(metric.name, sample.name, list(sample.labels), list(sample.labels.values()),
                               metric.documentation)
                values.write_value(key, sample.value, 0.0)
    finally:
        values.close()
    os.replace(building, archive)
    for f in files:
        os.unlink(f)
