"""Dispatch throughput: completions per second for N submissions with the
simulator answering after a fixed latency, as a ratio of the ceiling the
per-project in-flight limit allows (limit ÷ latency). Goal: ≥ 0.9.

Run: .venv/bin/python bench/dispatch.py [--db sqlite|postgres] [--n 2000] [--latency-ms 200]
The postgres variant uses PostgreSQL + Redis on loopback (throwaway database, Redis db 9).
"""

from __future__ import annotations

import argparse
import sys
import time
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
    return {"db": db, "completed": completed, "n": n, "seconds": seconds, "rate": rate, "ceiling": ceiling,
            "ratio": rate / ceiling}


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
    print(f"dispatch [{result['db']}]: {result['completed']}/{result['n']} completed in {result['seconds']:.1f} s "
          f"= {result['rate']:.1f}/s; ceiling {result['ceiling']:.0f}/s; ratio {result['ratio']:.2f} "
          f"(goal >= {GOAL}): {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
