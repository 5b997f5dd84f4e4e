"""Fault tests (`make faults`): the real processes, killed and starved.

- a worker killed with SIGKILL in the middle of a batch, then restarted;
- Hive (the standalone simulator) down for a minute;
- a storm of 429s.
Each ends with every submission completed exactly once.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from django.db.models import Count
from django_q.models import Schedule

from moderation.models import AuditEvent, Partner, Project, Result, Status, Submission
from moderation.services.keys import issue_key
from tests.conftest import REPO
from tests.stack import free_port, start_stack, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

# Short leases so the sweep takes back a dead worker's rows within the test.
FAST = {"HIVE_READ_TIMEOUT": "5", "HIVE_CONNECT_TIMEOUT": "1", "Q_TIMEOUT": "20"}


class Simulator:
    """The standalone simulator as its own process, so it can die."""

    def __init__(self, env: dict, port: int):
        self.env, self.port = env, port
        self.url = f"http://127.0.0.1:{port}"
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_hive_simulator", "--port", str(self.port)], cwd=REPO, env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(self._up, timeout=20, message="simulator")

    def _up(self) -> bool:
        try:
            return requests.get(f"{self.url}/stats", timeout=1).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def control(self, **changes) -> None:
        requests.post(f"{self.url}/control", json=changes, timeout=5).raise_for_status()

    def stats(self) -> dict:
        return requests.get(f"{self.url}/stats", timeout=5).json()


@pytest.fixture
def rig(django_db_blocker, tmp_path):
    port = free_port()
    with django_db_blocker.unblock():
        stack = start_stack(str(tmp_path), workers=4, extra_env={**FAST, "HIVE_API_URL": f"http://127.0.0.1:{port}"})
    simulator = Simulator(stack.env, port)
    simulator.start()
    Schedule.objects.get_or_create(name="hiveportal-sweep", defaults=dict(
        func="moderation.tasks.sweep", schedule_type=Schedule.MINUTES, minutes=1, repeats=-1))
    project = Project.objects.create(slug="faults", name="Faults", endpoint_type="text", delivery="sync",
                                     hive_api_key="sim-text-faults", inflight_limit=4)
    partner = Partner.objects.create(name="faults")
    partner.projects.add(project)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {issue_key(partner).plaintext}"
    yield stack, simulator, session
    simulator.stop()
    stack.stop()


def send(stack, session, count: int) -> list[str]:
    ids = []
    for n in range(count):
        response = session.post(f"{stack.base_url}/api/v1/projects/faults/submissions/",
                                json={"text_data": f"message number {n}"}, timeout=30)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def completed(ids) -> int:
    return Submission.objects.filter(pk__in=ids, status=Status.COMPLETED).count()


def assert_each_completed_once(ids) -> None:
    assert completed(ids) == len(ids)
    per_submission = Result.objects.filter(submission_id__in=ids).values("submission_id").annotate(n=Count("id"))
    assert sorted(row["n"] for row in per_submission) == [1] * len(ids)


def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(rig):
    stack, simulator, session = rig
    simulator.control(latency_ms=50)
    ids = send(stack, session, 1000)
    wait_for(lambda: completed(ids) >= 200, timeout=120, message="a fifth of the batch")
    stack.kill("worker", signal.SIGKILL)
    in_flight = Submission.objects.filter(pk__in=ids, status=Status.PROCESSING).count()
    stack.start_worker()
    wait_for(lambda: completed(ids) == len(ids), timeout=300, interval=1, message="the whole batch")
    assert_each_completed_once(ids)
    print(f"killed with {in_flight} in flight; all {len(ids)} completed once")


def test_hive_down_for_a_minute_loses_nothing_and_backs_off(rig):
    stack, simulator, session = rig
    ids = send(stack, session, 40)
    simulator.stop()
    outage_started = time.monotonic()
    ids += send(stack, session, 40)
    time.sleep(max(0.0, 60 - (time.monotonic() - outage_started)))
    calls_during_outage = AuditEvent.objects.filter(action="hive.retry_scheduled").count()
    simulator.start()
    wait_for(lambda: completed(ids) == len(ids), timeout=240, interval=1, message="recovery")
    assert_each_completed_once(ids)
    # The circuit: at most the in-flight limit when it opened, then one probe per
    # pause (2, 4, 8, 16, 32, 60 s: about seven in a minute).
    assert calls_during_outage <= 4 + 10, calls_during_outage
    print(f"{calls_during_outage} calls failed during the 60 s outage")


def test_a_429_storm_completes_without_a_tight_retry_loop(rig):
    stack, simulator, session = rig
    simulator.control(error_rate=1.0, error_status=429)
    ids = send(stack, session, 100)
    time.sleep(20)
    refused = simulator.stats()["errors_returned"]
    simulator.control(error_rate=0)
    wait_for(lambda: completed(ids) == len(ids), timeout=240, interval=1, message="the storm to pass")
    assert_each_completed_once(ids)
    # Retry-After is 1 s and the circuit doubles its pause: a few dozen calls in
    # 20 s at most, not hundreds.
    assert refused <= 30, refused
    print(f"{refused} calls answered 429 during a 20 s storm")
