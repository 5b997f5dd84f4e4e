"""Dispatch throughput: completions per second for N submissions with the
simulator answering after a fixed latency, as a ratio of the ceiling the
per-project in-flight limit allows (limit ÷ latency). Goal: ≥ 0.9.

Run: .venv/bin/python bench/dispatch.py [--db sqlite|postgres] [--n 2000] [--latency-ms 200]
The postgres variant uses PostgreSQL + Redis on loopback (throwaway database, Redis db 9).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench.common import PYTHON, Process, bench_env, fresh_postgres, manage, setup_django, start_simulator, workdir  # noqa: E402,E501

GOAL = 0.9


def measure(db: str, n: int, latency_ms: int, limit: int, workers: int) -> dict:
    work = workdir(f"dispatch-{db}")
    database_url = redis_url = None
    if db == "postgres":
        database_url = fresh_postgres("hiveportal_bench_dispatch")
        redis_url = "redis://127.0.0.1:6379/9"
        import redis

        redis.from_url(redis_url).flushdb()
    env = bench_env(work, database_url, redis_url, HIVE_INFLIGHT_LIMIT=limit, Q_WORKERS=workers,
                    HIVE_READ_TIMEOUT=30)
    manage(env, "migrate", "--noinput")
    simulator, sim_url = start_simulator(env, work)
    env["HIVE_API_URL"] = sim_url
    requests.post(f"{sim_url}/control", json={"latency_ms": latency_ms}, timeout=5).raise_for_status()
    simulator_ms = _simulator_alone(sim_url, clients=limit)
    setup_django(env)
    from django.db.models import Max, Min
    from django_q.tasks import async_task

    from moderation.models import Partner, Project, Status, Submission

    project = Project.objects.create(slug="bench", name="Bench", endpoint_type="text", delivery="sync",
                                     hive_api_key="sim-text-bench")
    partner = Partner.objects.create(name="bench")
    rows = [Submission(project=project, partner=partner, source="text_data", text_data=f"message {i}",
                       media_kind="text") for i in range(n)]
    Submission.objects.bulk_create(rows, batch_size=500)
    for row in rows:  # what the API does for each accepted submission
        async_task("moderation.tasks.dispatch_submission", str(row.pk))

    worker = Process("worker", [PYTHON, "manage.py", "qcluster"], env, work)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done = Submission.objects.filter(status__in=[Status.COMPLETED, Status.FAILED]).count()
            if done >= n:
                break
            time.sleep(1)
    finally:
        worker.stop()
        simulator.stop()
    span = Submission.objects.aggregate(first=Min("completed_at"), last=Max("completed_at"))
    completed = Submission.objects.filter(status=Status.COMPLETED).count()
    seconds = (span["last"] - span["first"]).total_seconds()
    rate = (completed - 1) / seconds if seconds > 0 else 0.0
    ceiling = limit / (latency_ms / 1000)
    calls = sorted((done - started).total_seconds() * 1000 for started, done in Submission.objects.filter(
        status=Status.COMPLETED).values_list("dispatched_at", "completed_at"))
    return {"db": db, "completed": completed, "n": n, "seconds": seconds, "rate": rate, "ceiling": ceiling,
            "ratio": rate / ceiling, "simulator_ms": simulator_ms, "call_ms": statistics.median(calls),
            "call_mean_ms": statistics.fmean(calls), "cycle_ms": limit / rate * 1000 if rate else 0.0}


def _simulator_alone(sim_url: str, clients: int, calls: int = 10) -> float:
    """The simulator's median answer time with `clients` callers at once: the
    part of each slot's cycle that is the simulator and HTTP, not dispatch."""
    times: list[float] = []

    def caller(k: int) -> None:
        with requests.Session() as session:
            for j in range(calls):
                started = time.monotonic()
                session.post(f"{sim_url}/api/v2/task/sync", headers={"Authorization": "Token sim-text-bench"},
                             data={"text_data": f"calibration {k} {j}"}, timeout=30).raise_for_status()
                times.append((time.monotonic() - started) * 1000)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(caller, range(clients)))
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--workers", type=int, default=12)
    args = parser.parse_args()
    result = measure(args.db, args.n, args.latency_ms, args.limit, args.workers)
    ok = result["ratio"] >= GOAL and result["completed"] == result["n"]
    # The verdict last: make bench shows the last line.
    print(f"each slot's cycle {result['cycle_ms']:.1f} ms: a call (claim to result stored) {result['call_ms']:.1f} ms "
          f"median, {result['call_mean_ms']:.1f} ms mean; the simulator alone answers in {result['simulator_ms']:.1f} ms "
          f"(median, {args.limit} callers at once)")
    print(f"dispatch [{result['db']}]: {result['completed']}/{result['n']} completed in {result['seconds']:.1f} s "
          f"= {result['rate']:.1f}/s; ceiling {result['ceiling']:.0f}/s; ratio {result['ratio']:.3f} "
          f"(goal >= {GOAL}): {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
