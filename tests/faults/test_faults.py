"""Fault tests (`make faults`): the real processes, killed and starved.

- a worker killed with SIGKILL in the middle of a batch, then restarted;
- Hive (the standalone simulator) down for a minute;
- a storm of 429s;
- Hive's callbacks re-sent, forged, and late from another task, all at once.
Each ends with every submission completed exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db.models import Count
from django_q.models import Schedule

from moderation.models import AuditEvent, CallbackReceipt, Partner, Project, Result, Status, Submission
from moderation.services.callbacks import token_for
from moderation.services.keys import issue_key
from tests.conftest import REPO
from tests.stack import free_port, start_stack, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

# Calls give up quickly. Leases and task timeouts are production's.
FAST = {"HIVE_READ_TIMEOUT": "5", "HIVE_CONNECT_TIMEOUT": "1"}
LEASE_SECONDS = 30  # HIVE_LEASE_SECONDS's default
SWEEP_SECONDS = 60


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
    try:
        simulator.start()
    except BaseException:
        stack.stop()  # its workers would take the next test's tasks
        raise
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


def send(stack, session, count: int, slug: str = "faults") -> list[str]:
    ids = []
    for n in range(count):
        response = session.post(f"{stack.base_url}/api/v1/projects/{slug}/submissions/",
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
    stranded = list(Submission.objects.filter(pk__in=ids, status=Status.PROCESSING).values_list("pk", flat=True))
    stack.start_worker()
    restarted = time.monotonic()
    # Nothing renews the dead worker's leases: its calls go back to the queue once
    # they lapse (the next sweep), not after django-q2's task timeout (minutes).
    # Worst case: the leases lapse just after a sweep, and django-q2's scheduler
    # first runs about 30 s after the cluster starts.
    wait_for(lambda: completed(stranded) == len(stranded), timeout=LEASE_SECONDS + 2 * SWEEP_SECONDS + 30,
             interval=0.5, message="the calls the killed worker had in flight")
    stranded_after = time.monotonic() - restarted
    wait_for(lambda: completed(ids) == len(ids), timeout=300, interval=1, message="the whole batch")
    assert_each_completed_once(ids)
    print(f"killed with {len(stranded)} in flight, sent again {stranded_after:.0f} s after the restart; "
          f"all {len(ids)} completed once")


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


def test_resent_forged_and_late_callbacks_never_make_a_second_result(rig):
    stack, simulator, session = rig
    project = Project.objects.create(slug="faults-async", name="Faults async", endpoint_type="text", delivery="async",
                                     hive_api_key="sim-text-faults-async")
    Partner.objects.get(name="faults").projects.add(project)
    simulator.control(callback_delay_ms=100)
    ids = send(stack, session, 60, slug="faults-async")
    wait_for(lambda: completed(ids) == len(ids), timeout=120, interval=0.5, message="Hive's callbacks")
    first = {str(r.submission_id): r.body for r in CallbackReceipt.objects.filter(submission_id__in=ids)}
    assert len(first) == len(ids)

    def post(submission_id, body, token=None):
        url = f"{stack.base_url}/hive/callback/{submission_id}/{token or token_for(submission_id)}/"
        return requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30).status_code

    def hostile(i_and_id):
        i, submission_id = i_and_id
        body = json.loads(first[submission_id])
        other = ids[(i + 1) % len(ids)]
        late = {**json.loads(first[other]), "metadata": submission_id}  # a stray task's result, after ours
        return {
            "resent": [post(submission_id, first[submission_id]),
                       post(submission_id, json.dumps({**body, "resent_by": "manual",
                                                       "resent_on": "2026-11-29T00:00:00Z"}))],
            "late": [post(submission_id, json.dumps({**late, "id": f"late-{i}"}))],
            "forged": [post(submission_id, first[submission_id], token=token_for(other)),
                       post(other, first[submission_id])],
        }

    with ThreadPoolExecutor(8) as pool:  # all at once, through the web processes
        answers = list(pool.map(hostile, enumerate(ids)))
    assert {code for a in answers for code in a["resent"] + a["late"]} == {200}
    assert {code for a in answers for code in a["forged"]} == {403}
    receipts = CallbackReceipt.objects.filter(submission_id__in=ids)
    wait_for(lambda: not receipts.filter(authentic=True, outcome="pending").exists(), timeout=60,
             message="the queue to process every receipt")
    assert_each_completed_once(ids)
    routed = AuditEvent.objects.filter(action="decision.routed", submission_id__in=ids).values("submission_id")
    assert routed.count() == len(ids)
    assert receipts.filter(authentic=True, duplicate=False).count() == len(ids)
    print(f"{len(ids)} submissions: {3 * len(ids)} re-sent or late callbacks and {2 * len(ids)} forged ones, "
          "one result each")
