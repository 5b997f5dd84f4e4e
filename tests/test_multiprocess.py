"""Nothing assumes a single process: two gunicorn web processes and three
django-q2 workers share PostgreSQL, Redis and an S3-compatible store (moto in
server mode); one worker is killed half-way; every submission still completes
with exactly one result, and the in-flight limit and the partner throttle hold
across processes. The scenario lives in bench/multiprocess.py (5,000
submissions there; MULTIPROCESS_SUBMISSIONS here, 300 by default).
"""

from __future__ import annotations

import os

import pytest
import requests
from django.db import connection

from bench.common import Process, start_simulator
from bench.multiprocess import BUCKET, Scenario, run
from tests.ops_stack import MotoServer, RedisServer, deployment_env, make_private_bucket, read_log, start_web
from tests.stack import database_url

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

N = int(os.environ.get("MULTIPROCESS_SUBMISSIONS", "300"))


@pytest.fixture
def db_url(django_db_setup, django_db_blocker) -> str:
    with django_db_blocker.unblock():
        return database_url()


@pytest.fixture
def redis(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def engines(db_url, redis, tmp_path):
    moto = MotoServer(tmp_path)
    make_private_bucket(moto.endpoint, BUCKET)
    simulator: Process
    simulator, simulator_url = start_simulator(deployment_env(db_url), tmp_path)
    yield dict(database_url=db_url, redis=redis, moto=moto, simulator_url=simulator_url, log_dir=tmp_path)
    simulator.stop()
    moto.stop()


def test_two_web_processes_and_three_workers_complete_every_submission_exactly_once(engines):
    if connection.vendor != "postgresql":
        pytest.skip("the multi-process run needs PostgreSQL: run with DATABASE_URL=postgres://... (CI pass 2)")
    scenario = Scenario(n=N, timeout=300)

    outcome = run(scenario, database_url=engines["database_url"], redis_url=engines["redis"].url,
                  s3_endpoint=engines["moto"].endpoint, simulator_url=engines["simulator_url"],
                  log_dir=engines["log_dir"])

    print(f"\nmultiprocess: {outcome.summary(scenario.inflight_limit)}")
    if outcome.completed != N:
        for name in ("web-1", "web-2", "worker-1", "worker-2", "worker-3"):
            print(f"--- {name}\n{read_log(engines['log_dir'], name)}")
    assert outcome.refused == [] and outcome.accepted == N
    assert (outcome.completed, outcome.failed) == (N, 0), outcome.unfinished
    assert outcome.exactly_one_result_each, outcome.results_per_submission
    assert outcome.killed == "worker-1"
    # The limit was reached and never exceeded, although nine processes were claiming.
    assert all(0 < seen <= scenario.inflight_limit for seen in outcome.max_inflight.values()), outcome.max_inflight
    # The web process's /metrics summed the workers' counters (one directory per host);
    # each process of the killed worker may have died between a call and counting it.
    assert outcome.hive_calls_on_metrics >= N - scenario.q_workers
    texts = sum(1 for i in range(N) if (i // 2) % 2 == 1)
    assert outcome.callbacks_on_metrics >= texts


def test_the_partner_throttle_holds_across_two_web_processes(db_url, redis, api_key, tmp_path):
    env = deployment_env(db_url, REDIS_URL=redis.url, API_THROTTLE_RATE="10/min")
    webs = [start_web(f"throttled-{i}", env, tmp_path) for i in (1, 2)]
    try:
        statuses = [requests.get(f"{webs[i % 2][1]}/api/v1/projects/", timeout=10,
                                 headers={"Authorization": f"Token {api_key}"}) for i in range(16)]
    finally:
        for process, _ in webs:
            process.stop()

    assert [r.status_code for r in statuses] == [200] * 10 + [429] * 6, read_log(tmp_path, "throttled-1")
    assert all(int(r.headers["Retry-After"]) > 0 for r in statuses[10:])
