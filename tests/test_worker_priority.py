"""Worker processes run at a lower CPU priority than the web processes
(moderation/ops/worker.py), so on a shared machine acks and uploads come first."""

from __future__ import annotations

import multiprocessing
import os

import pytest
from django_q.signals import post_spawn


def _spawned_niceness(queue) -> None:
    # What django-q2 does first in each worker process it starts.
    post_spawn.send(sender="django_q", proc_name="Process-1:1")
    queue.put(os.nice(0))


def niceness_of_a_new_worker() -> int:
    context = multiprocessing.get_context("fork")  # the worker's way: forked from the cluster
    queue = context.Queue()
    child = context.Process(target=_spawned_niceness, args=(queue,))
    child.start()
    child.join(30)
    return queue.get(timeout=5)


@pytest.mark.parametrize("setting", [5, 0])
def test_a_new_worker_process_lowers_its_priority_by_the_setting(settings, setting):
    settings.Q_WORKER_NICENESS = setting
    before = os.nice(0)
    assert niceness_of_a_new_worker() == min(before + setting, 19)
    # The process that started it (the cluster, as the web is) keeps its own.
    assert os.nice(0) == before
