"""Many processes, one truth: 2 web processes (gunicorn) and 3 workers
(django-q2 clusters) on PostgreSQL + Redis + an S3-compatible store (moto in
server mode), with the Hive simulator, all on loopback.

N submissions (half image uploads to a sync project, half texts to an async
project) go to both web processes in turn; half-way, one worker is killed with
SIGKILL (its whole process group, as a machine dying would). Then: every
submission completes with exactly one result, the per-project in-flight limit
held across all processes (sampled from the database throughout), and the web
process's /metrics counted the workers' Hive calls and the callbacks.

Run: .venv/bin/python bench/multiprocess.py [--n 5000] [--latency-ms 20]
Uses a throwaway PostgreSQL database and Redis db 8 on 127.0.0.1 (flushed).
tests/test_multiprocess.py runs the same scenario with a smaller N.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

METRICS_TOKEN = "bench-metrics-token-0123456789"
BUCKET = "hiveportal-multiprocess"
PNG = (Path(__file__).resolve().parent.parent.parent / "shared" / "media-samples" / "sample.png")


@dataclass
class Scenario:
    n: int = 5000
    webs: int = 2
    workers: int = 3
    q_workers: int = 2  # worker processes per django-q2 cluster
    inflight_limit: int = 4
    latency_ms: int = 20
    callback_delay_ms: int = 20
    senders: int = 16
    # How soon the sweep re-queues a callback whose processing task died with the worker.
    callback_stall_seconds: int = 60
    timeout: float = 900


@dataclass
class Outcome:
    n: int
    accepted: int = 0
    resent: int = 0  # requests sent again after a dropped connection
    refused: list[str] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    results_per_submission: dict[int, int] = field(default_factory=dict)  # results -> submissions
    max_inflight: dict[str, int] = field(default_factory=dict)
    hive_calls_on_metrics: float = 0
    callbacks_on_metrics: float = 0
    send_seconds: float = 0
    total_seconds: float = 0
    killed: str = ""
    unfinished: list[str] = field(default_factory=list)  # "<status> <id>, receipts: ..." when something is stuck

    @property
    def exactly_one_result_each(self) -> bool:
        return self.results_per_submission == {1: self.n}

    def summary(self, limit: int) -> str:
        return (f"{self.accepted}/{self.n} accepted in {self.send_seconds:.1f} s "
                f"({self.accepted / max(self.send_seconds, 1e-9):.0f}/s over 2 web processes, "
                f"{self.resent} sent again after a dropped connection); "
                f"{self.completed} completed, {self.failed} failed in {self.total_seconds:.1f} s; "
                f"results per submission {self.results_per_submission}; killed {self.killed} half-way; "
                f"max in flight per project {self.max_inflight} (limit {limit}); "
                f"/metrics: {self.hive_calls_on_metrics:.0f} Hive calls, {self.callbacks_on_metrics:.0f} callbacks")


def run(scenario: Scenario, *, database_url: str, redis_url: str, s3_endpoint: str, simulator_url: str,
        log_dir: Path) -> Outcome:
    """Seed, start the processes, send, kill a worker half-way, wait, verify,
    stop. Django must be set up on the same database (the ORM seeds and checks)."""
    from tests.ops_stack import deployment_env, s3_env, start_web, start_worker, stop_all

    projects, api_key = _seed(scenario)
    env = deployment_env(database_url, REDIS_URL=redis_url, **s3_env(s3_endpoint, BUCKET),
                         HIVE_API_URL=simulator_url, HIVE_READ_TIMEOUT=5, HIVE_CONNECT_TIMEOUT=1,
                         Q_WORKERS=scenario.q_workers, METRICS_TOKEN=METRICS_TOKEN,
                         API_THROTTLE_RATE="1000000/min", PROMETHEUS_MULTIPROC_DIR=log_dir / "metrics",
                         CALLBACK_STALL_SECONDS=scenario.callback_stall_seconds)
    (log_dir / "metrics").mkdir(exist_ok=True)
    requests.post(f"{simulator_url}/control", json={"reset": True, "latency_ms": scenario.latency_ms,
                                                    "callback_delay_ms": scenario.callback_delay_ms},
                  timeout=5).raise_for_status()
    processes, web_urls = [], []
    outcome = Outcome(n=scenario.n)
    sampler = _InflightSampler([p.pk for p in projects])
    started = time.monotonic()
    try:
        for i in range(scenario.webs):
            process, url = start_web(f"web-{i + 1}", env, log_dir)
            processes.append(process)
            web_urls.append(url)
        workers = []
        for i in range(scenario.workers):
            # Hive's callbacks come back through both web processes.
            worker_env = {**env, "PORTAL_BASE_URL": web_urls[i % len(web_urls)]}
            workers.append(start_worker(f"worker-{i + 1}", worker_env, log_dir))
        processes.extend(workers)
        sampler.start()
        half = scenario.n // 2
        _send(outcome, range(half), web_urls, projects, api_key, scenario.senders)
        os.killpg(workers[0].pid, signal.SIGKILL)  # the machine dies: no graceful anything
        workers[0].popen.wait(timeout=10)
        outcome.killed = workers[0].name
        _send(outcome, range(half, scenario.n), web_urls, projects, api_key, scenario.senders)
        outcome.send_seconds = time.monotonic() - started
        _wait_until_done(projects, scenario.n, scenario.timeout)
        outcome.total_seconds = time.monotonic() - started
        _read_metrics(outcome, web_urls[0], projects)
    finally:
        sampler.stop()
        stop_all(processes)
    _verify(outcome, projects)
    outcome.max_inflight = {p.slug: sampler.max_seen[p.pk] for p in projects}
    return outcome


def _seed(scenario: Scenario):
    from django_q.models import Schedule

    from moderation.models import Delivery, Partner, Project
    from moderation.services.keys import issue_key

    images = Project.objects.create(slug="mp-images", name="Images", endpoint_type="visual", delivery=Delivery.SYNC,
                                    hive_api_key="sim-visual-mp", inflight_limit=scenario.inflight_limit,
                                    thresholds={"general_nsfw": {"review": 0.5, "reject": 0.9}})
    texts = Project.objects.create(slug="mp-texts", name="Texts", endpoint_type="text", delivery=Delivery.ASYNC,
                                   hive_api_key="sim-text-mp", inflight_limit=scenario.inflight_limit)
    partner = Partner.objects.create(name="multiprocess")
    partner.projects.add(images, texts)
    # The sweep takes back what the killed worker held (a migration makes it;
    # a test database flushed between tests has lost it).
    Schedule.objects.get_or_create(name="hiveportal-sweep", defaults=dict(
        func="moderation.tasks.sweep", schedule_type=Schedule.MINUTES, minutes=1, repeats=-1))
    return [images, texts], issue_key(partner).plaintext


_local = threading.local()
SEND_ATTEMPTS = 3


def _send(outcome: Outcome, indexes, web_urls: list[str], projects, api_key: str, senders: int) -> None:
    png = PNG.read_bytes()
    images, texts = projects
    lock = threading.Lock()

    def one(i: int) -> None:
        if not hasattr(_local, "session"):
            _local.session = requests.Session()
            _local.session.headers["Authorization"] = f"Token {api_key}"
        # As a partner's client should: a server may close an idle keep-alive
        # connection just as the next request leaves (RFC 9112 section 9.3.1;
        # gunicorn does after GUNICORN_KEEPALIVE seconds), and a POST is only
        # safe to send again with the same Idempotency-Key. The retry goes to
        # the other web process, which must answer with the same submission.
        headers = {"Idempotency-Key": f"mp-{i}"}
        for attempt in range(SEND_ATTEMPTS):
            if attempt:
                with lock:
                    outcome.resent += 1
            base = web_urls[(i + attempt) % len(web_urls)]
            try:
                if (i // len(web_urls)) % 2 == 0:
                    response = _local.session.post(f"{base}/api/v1/projects/{images.slug}/submissions/",
                                                   files={"media": (f"{i}.png", png)},
                                                   data={"external_id": f"mp-{i}"}, headers=headers, timeout=60)
                else:
                    response = _local.session.post(f"{base}/api/v1/projects/{texts.slug}/submissions/",
                                                   json={"text_data": f"message number {i}", "external_id": f"mp-{i}"},
                                                   headers=headers, timeout=60)
            except requests.ConnectionError:
                if attempt == SEND_ATTEMPTS - 1:
                    raise
                continue
            # 409 with Retry-After: the dropped try did arrive and is still being stored.
            if not (response.status_code == 409 and "Retry-After" in response.headers):
                break
            time.sleep(float(response.headers["Retry-After"]))
        with lock:
            if response.status_code == 202:
                outcome.accepted += 1
            else:
                outcome.refused.append(f"{response.status_code} {response.text[:200]}")

    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(one, indexes))


class _InflightSampler(threading.Thread):
    """Every 50 ms: how many calls each project has in flight, counted as
    the claim counts them (processing, lease not expired)."""

    def __init__(self, project_ids: list[int]):
        super().__init__(daemon=True)
        self.project_ids = project_ids
        self.max_seen = {pk: 0 for pk in project_ids}
        self._stop_event = threading.Event()

    def run(self) -> None:
        from django.db import connection
        from django.db.models import Count
        from django.utils import timezone

        from moderation.models import Status, Submission

        try:
            while not self._stop_event.wait(0.05):
                rows = (Submission.objects.filter(project_id__in=self.project_ids, status=Status.PROCESSING,
                                                  lease_until__gt=timezone.now())
                        .values_list("project_id").annotate(n=Count("pk")).order_by())
                for project_id, count in rows:
                    self.max_seen[project_id] = max(self.max_seen[project_id], count)
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=10)


def _wait_until_done(projects, n: int, timeout: float) -> None:
    from moderation.models import Status, Submission

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = Submission.objects.filter(project__in=projects, status__in=[Status.COMPLETED, Status.FAILED]).count()
        if done >= n:
            return
        time.sleep(1)


def _read_metrics(outcome: Outcome, web_url: str, projects) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    response = requests.get(f"{web_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30)
    response.raise_for_status()
    slugs = {p.slug for p in projects}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "hiveportal_hive_call_seconds_count" and sample.labels.get("project") in slugs:
                outcome.hive_calls_on_metrics += sample.value
            elif sample.name == "hiveportal_hive_callbacks_total" and sample.labels.get("outcome") == "accepted":
                outcome.callbacks_on_metrics += sample.value


def _verify(outcome: Outcome, projects) -> None:
    from collections import Counter

    from django.db.models import Count

    from moderation.models import CallbackReceipt, Result, Status, Submission

    mine = Submission.objects.filter(project__in=projects)
    outcome.completed = mine.filter(status=Status.COMPLETED).count()
    outcome.failed = mine.filter(status=Status.FAILED).count()
    per_submission = Counter(dict(mine.annotate(r=Count("results")).values_list("pk", "r")))
    outcome.results_per_submission = dict(Counter(per_submission.values()))
    assert Result.objects.filter(submission__in=mine).count() == sum(per_submission.values())
    for pk, status in mine.exclude(status__in=[Status.COMPLETED, Status.FAILED]).values_list("pk", "status"):
        receipts = list(CallbackReceipt.objects.filter(submission_id=pk).values_list("outcome", flat=True))
        outcome.unfinished.append(f"{status} {pk}, callback receipts: {receipts}")


# --- Standalone ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--inflight-limit", type=int, default=4)
    args = parser.parse_args()

    from bench.common import bench_env, fresh_postgres, manage, setup_django, start_simulator, workdir

    work = workdir("multiprocess")
    database_url = fresh_postgres("hiveportal_bench_multiprocess")
    redis_url = "redis://127.0.0.1:6379/8"
    import redis

    redis.from_url(redis_url).flushdb()
    env = bench_env(work, database_url, redis_url)
    manage(env, "migrate", "--noinput")
    setup_django(env)
    from tests.ops_stack import MotoServer, make_private_bucket

    moto = MotoServer(work)
    make_private_bucket(moto.endpoint, BUCKET)
    simulator, simulator_url = start_simulator(env, work)
    scenario = Scenario(n=args.n, latency_ms=args.latency_ms, inflight_limit=args.inflight_limit)
    try:
        outcome = run(scenario, database_url=database_url, redis_url=redis_url, s3_endpoint=moto.endpoint,
                      simulator_url=simulator_url, log_dir=work)
    finally:
        simulator.stop()
        moto.stop()
    ok = (outcome.accepted == outcome.n and outcome.completed == outcome.n and outcome.exactly_one_result_each
          and all(v <= scenario.inflight_limit for v in outcome.max_inflight.values())
          and outcome.hive_calls_on_metrics >= outcome.n)
    print(f"multiprocess: {outcome.summary(scenario.inflight_limit)}: {'ok' if ok else 'FAILED'}")
    print(f"logs: {work}")
    if outcome.refused:
        print("refused (first 5):", *outcome.refused[:5], sep="\n  ")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
