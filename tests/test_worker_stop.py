"""Stopping the worker cluster (a deploy): SIGTERM to qcluster's main process,
as systemd's KillMode=mixed sends it. The pumps claim nothing more, the calls
in flight finish and are recorded, and the cluster exits in seconds, not after
each pump's minute of budget; what is left stays queued, and the cluster
started again takes it up at once."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import requests
from django.db.models import Count

from moderation.models import Partner, Project, Result, Status, Submission
from moderation.services.keys import issue_key
from tests.stack import start_stack, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ITEMS = 150
LATENCY_MS = 700  # 150 items over 2 slots: about 50 s of work, within a pump's 60 s budget


@pytest.fixture
def stack(tmp_path):
    running = start_stack(str(tmp_path), workers=2)
    yield running
    running.stop()


def test_a_stopped_cluster_finishes_its_calls_and_exits_without_claiming_more(stack):
    project = Project.objects.create(slug="stopping", name="Stopping", endpoint_type="text", delivery="sync",
                                     hive_api_key="sim-text-stop", inflight_limit=2)
    partner = Partner.objects.create(name="stopping")
    partner.projects.add(project)
    stack.control(latency_ms=LATENCY_MS)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {issue_key(partner).plaintext}"
    for n in range(ITEMS):
        response = session.post(f"{stack.base_url}/api/v1/projects/stopping/submissions/",
                                json={"text_data": f"message {n}"}, timeout=30)
        assert response.status_code == 202, response.text
    wait_for(lambda: Submission.objects.filter(status=Status.COMPLETED).count() >= 4, timeout=60,
             message="the pumps to be under way")

    worker = stack.processes.pop("worker")
    worker.send_signal(signal.SIGTERM)  # the main process only
    asked = time.monotonic()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)  # its workers would go on claiming
        pytest.fail(f"the cluster was still running 30 s after SIGTERM:\n{stack.log('worker')}")
    stopped_after = time.monotonic() - asked

    assert stopped_after < 15, stopped_after
    by_status = dict(Submission.objects.values_list("status").annotate(n=Count("id")))
    assert Status.PROCESSING not in by_status, by_status  # every call in flight was recorded
    assert by_status[Status.QUEUED] > ITEMS // 2, by_status  # and nothing more was claimed
    assert by_status[Status.COMPLETED] + by_status[Status.QUEUED] == ITEMS, by_status
    assert set(Result.objects.values_list("submission_id").annotate(n=Count("id")).values_list("n", flat=True)) == {1}
    print(f"stopped {stopped_after:.1f} s after SIGTERM; {by_status}")

    # Started again (the deploy's new code), it takes the queue up at once: it sweeps
    # on start instead of waiting for the schedule (which this test's database lacks).
    stack.control(latency_ms=0)
    stack.start_worker()
    restarted = time.monotonic()
    done = by_status[Status.COMPLETED]
    wait_for(lambda: Submission.objects.filter(status=Status.COMPLETED).count() > done, timeout=30,
             message="work to resume after the restart")
    print(f"resumed {time.monotonic() - restarted:.1f} s after the restart")
    wait_for(lambda: Submission.objects.filter(status=Status.COMPLETED).count() == ITEMS, timeout=60,
             message="the rest to complete after the restart")
    print(f"all done {time.monotonic() - restarted:.1f} s after the restart")
    assert set(Result.objects.values_list("submission_id").annotate(n=Count("id")).values_list("n", flat=True)) == {1}
