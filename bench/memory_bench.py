"""A 500 MB video end to end: uploaded through the partner API to gunicorn,
dispatched by a django-q2 worker to the standalone Hive simulator, until the
submission is completed. Goal: the peak RSS growth of the gunicorn worker that
took the upload and of the django-q2 worker that called Hive stays < 64 MB each
(uploads are spooled to disk, hashed and sniffed in chunks, moved into storage
and streamed to Hive: never held in memory).

Run: .venv/bin/python bench/memory_bench.py [--mb 500] [--db sqlite|postgres]
The postgres variant uses PostgreSQL + Redis on loopback (throwaway database
hiveportal_bench_memory, Redis db 12 flushed).

How it measures: gunicorn runs one worker process, django-q2 two. Each process
is warmed first with small uploads (4 MB, so they take the same spooled path)
until every django-q2 worker has made a Hive call; then, at idle, each
process's peak RSS (VmHWM) is reset through /proc/<pid>/clear_refs and its RSS
noted. After the big submission completes, growth = VmHWM − that idle RSS
(VmRSS sampled every 50 ms is the fallback when the kernel cannot reset the
peak). The worker figure is the largest over every process of the cluster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from requests_toolbelt import MultipartEncoder  # noqa: E402

from bench.common import (  # noqa: E402
    PYTHON, REPO, Process, bench_env, free_port, fresh_postgres, manage, rss_kb, setup_django, start_simulator,
    wait_http, workdir,
)

GOAL_MB = 64
Q_WORKERS = 2
WARM_MB = 4
SAMPLE = REPO.parent / "shared" / "media-samples" / "sample.mp4"


# --- The video ------------------------------------------------------------------


def make_video(path: Path, size_mb: int) -> None:
    """A real MP4 followed by a top-level `free` box (64-bit size) of zeros,
    written in chunks: still a well-formed MP4 that sniffs as video."""
    sample = SAMPLE.read_bytes()
    filler = size_mb * 2**20 - len(sample) - 16
    chunk = b"\0" * 2**20
    with open(path, "wb") as out:
        out.write(sample)
        out.write((1).to_bytes(4, "big") + b"free" + (filler + 16).to_bytes(8, "big"))
        while filler > 0:
            out.write(chunk[: min(filler, len(chunk))])
            filler -= len(chunk)


def check_sniffs_as_video(path: Path) -> None:
    from moderation.hive.rules import VIDEO
    from moderation.services.media import sniff

    with open(path, "rb") as handle:
        info = sniff(handle)
    if info.kind != VIDEO:
        raise RuntimeError(f"{path.name} sniffs as {info}, not as video")


# --- Processes and their memory -----------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    # The command name may hold spaces: the fields after its ")" are fixed.
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def read_chars(pid: int) -> int:
    """Bytes the process has read through read(2) and friends (files and sockets)."""
    try:
        with open(f"/proc/{pid}/io") as io:
            for line in io:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak(pid: int) -> bool:
    """Set VmHWM back to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return rss_kb(pid, "VmHWM") <= rss_kb(pid, "VmRSS") + 256


class Sampler(threading.Thread):
    """The largest VmRSS of each process, every 50 ms."""

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.peak = {pid: 0 for pid in pids}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            for pid in self.peak:
                try:
                    self.peak[pid] = max(self.peak[pid], rss_kb(pid))
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


# --- The product's processes -----------------------------------------------------------


def start_web(env: dict, work: Path) -> tuple[Process, int, str]:
    port = free_port()
    web_env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4",
               "GUNICORN_TIMEOUT": "900", "GUNICORN_ACCESS_LOG": "0"}
    process = Process("web", [PYTHON, "-m", "gunicorn", "hiveportal.wsgi"], web_env, work)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz")
    workers = children(process.pid)
    if len(workers) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {workers}")
    return process, workers[0], url


def wait_for_cluster(pid: int, timeout: float = 60) -> None:
    """Sentinel, monitor, pusher and the workers are up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(descendants(pid)) >= Q_WORKERS + 3:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the django-q2 cluster did not start: {descendants(pid)}")


def upload(url: str, slug: str, api_key: str, path: Path, external_id: str) -> str:
    """POST the file as the partner API takes it, streamed from disk."""
    with open(path, "rb") as handle:
        encoder = MultipartEncoder(fields={"external_id": external_id, "media": (path.name, handle, "video/mp4")})
        response = requests.post(f"{url}/api/v1/projects/{slug}/submissions/", data=encoder, timeout=(5, 900),
                                 headers={"Content-Type": encoder.content_type, "Authorization": f"Token {api_key}"})
    if response.status_code != 202:
        raise RuntimeError(f"upload of {path.name}: HTTP {response.status_code} {response.text[:500]}")
    return response.json()["id"]


def wait_done(ids: list[str], timeout: float) -> None:
    from moderation.models import Status, Submission

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = dict(Submission.objects.filter(pk__in=ids).values_list("pk", "status"))
        if all(status in (Status.COMPLETED, Status.FAILED) for status in rows.values()) and len(rows) == len(ids):
            failed = [str(pk) for pk, status in rows.items() if status == Status.FAILED]
            if failed:
                raise RuntimeError(f"submissions failed: {failed}")
            return
        time.sleep(0.25)
    raise RuntimeError(f"submissions not completed after {timeout:.0f} s")


# --- The run ---------------------------------------------------------------------------


def measure(mb: int, db: str) -> dict:
    work = workdir(f"memory-{db}")
    database_url = redis_url = None
    if db == "postgres":
        database_url = fresh_postgres("hiveportal_bench_memory")
        redis_url = "redis://127.0.0.1:6379/12"
        import redis

        redis.from_url(redis_url).flushdb()
    env = bench_env(work, database_url, redis_url, MAX_UPLOAD_MB=mb + 16, Q_WORKERS=Q_WORKERS,
                    HIVE_READ_TIMEOUT=600, HIVE_INFLIGHT_LIMIT=Q_WORKERS)
    processes: list[Process] = []
    try:
        manage(env, "migrate", "--noinput")
        simulator, sim_url = start_simulator(env, work)
        processes.append(simulator)
        env["HIVE_API_URL"] = sim_url
        setup_django(env)
        from moderation.models import Delivery, Partner, Project
        from moderation.services.keys import issue_key

        project = Project.objects.create(slug="memory", name="Memory", endpoint_type="visual",
                                         delivery=Delivery.SYNC, hive_api_key="sim-visual-memory",
                                         inflight_limit=Q_WORKERS)
        partner = Partner.objects.create(name="memory-bench")
        partner.projects.add(project)
        api_key = issue_key(partner).plaintext

        warm, big = work / "warm.mp4", work / "big.mp4"
        make_video(warm, WARM_MB)
        make_video(big, mb)
        check_sniffs_as_video(big)

        web, web_pid, web_url = start_web(env, work)
        processes.append(web)
        cluster = Process("worker", [PYTHON, "manage.py", "qcluster"], env, work)
        processes.append(cluster)
        wait_for_cluster(cluster.pid)
        q_pids = descendants(cluster.pid)

        # Warm-up: each call holds a slot for a second, so the dispatch tasks
        # of one round land on different workers; rounds until every worker
        # has read a warm video (and so made a Hive call).
        requests.post(f"{sim_url}/control", json={"latency_ms": 1000}, timeout=5).raise_for_status()
        start_chars = {pid: read_chars(pid) for pid in q_pids}
        for round_no in range(5):
            ids = [upload(web_url, project.slug, api_key, warm, f"warm-{round_no}-{i}") for i in range(Q_WORKERS)]
            wait_done(ids, timeout=120)
            callers = [pid for pid in q_pids if read_chars(pid) - start_chars[pid] >= WARM_MB * 2**20]
            if len(callers) >= Q_WORKERS:
                break
        else:
            raise RuntimeError("warm-up: not every django-q2 worker made a Hive call")
        requests.post(f"{sim_url}/control", json={"latency_ms": 0}, timeout=5).raise_for_status()

        # Idle: the baseline, and each peak reset to it.
        time.sleep(2)
        pids = [web_pid, *q_pids]
        baseline = {pid: rss_kb(pid) for pid in pids}
        peak_reset = all([reset_peak(pid) for pid in pids])
        baseline = {pid: min(baseline[pid], rss_kb(pid)) for pid in pids}
        chars = {pid: read_chars(pid) for pid in pids}
        sampler = Sampler(pids)
        sampler.start()

        started = time.monotonic()
        submission_id = upload(web_url, project.slug, api_key, big, "big")
        uploaded = time.monotonic() - started
        wait_done([submission_id], timeout=900)
        total = time.monotonic() - started
        time.sleep(0.2)
        sampler.stop()

        def growth_mb(pid: int) -> float:
            peak = max(sampler.peak[pid], rss_kb(pid, "VmHWM") if peak_reset else 0)
            return (peak - baseline[pid]) / 1024

        size = big.stat().st_size
        caller = [pid for pid in q_pids if read_chars(pid) - chars[pid] >= size]
        per_process = {pid: growth_mb(pid) for pid in q_pids}
        return {
            "mb": size / 2**20, "db": db, "uploaded": uploaded, "total": total,
            "web": growth_mb(web_pid), "web_pid": web_pid,
            "worker": max(per_process.values()), "per_process": per_process, "caller": caller,
            "peak_reset": peak_reset,
        }
    finally:
        for process in reversed(processes):
            process.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    r = measure(args.mb, args.db)
    caller = r["caller"][0] if len(r["caller"]) == 1 else None
    print(f"[{r['db']}] {r['mb']:.0f} MB video: uploaded in {r['uploaded']:.1f} s, completed after {r['total']:.1f} s; "
          f"peak {'VmHWM (reset at idle)' if r['peak_reset'] else 'VmRSS sampled every 50 ms'}")
    print(f"  gunicorn worker {r['web_pid']}: +{r['web']:.1f} MB")
    for pid, growth in sorted(r["per_process"].items()):
        mark = " <- made the Hive call" if pid == caller else ""
        print(f"  django-q2 process {pid}: +{growth:.1f} MB{mark}")
    ok = r["web"] < GOAL_MB and r["worker"] < GOAL_MB and caller is not None
    if caller is None:
        print(f"  no single django-q2 process read the whole video: {r['caller']}")
    print(f"memory: web +{r['web']:.1f} MB, worker +{r['worker']:.1f} MB (goal < {GOAL_MB} MB each): "
          f"{'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
