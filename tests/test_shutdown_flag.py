"""The stop flag our qcluster sets in its SIGTERM handler and its forked workers
read (moderation/ops/shutdown.py)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

from moderation.ops import shutdown


def test_a_worker_killed_while_waiting_on_the_flag_does_not_block_the_stop(monkeypatch):
    # With a multiprocessing.Event, set() waits for every sleeper to wake, and a
    # sleeper SIGKILLed (out of memory) never does: the SIGTERM handler hung for ever.
    monkeypatch.setattr(shutdown, "_stopping", None)
    shutdown.prepare()
    child = multiprocessing.get_context("fork").Process(target=shutdown.pause, args=(60,))
    child.start()
    time.sleep(0.5)  # in pause()
    os.kill(child.pid, signal.SIGKILL)
    child.join()

    stopper = threading.Thread(target=shutdown.request_stop, daemon=True)
    stopper.start()
    stopper.join(timeout=5)
    assert not stopper.is_alive(), "setting the stop flag blocked"
    assert shutdown.stop_requested()


def test_a_forked_worker_sees_the_stop_and_its_pause_ends(monkeypatch):
    monkeypatch.setattr(shutdown, "_stopping", None)
    shutdown.prepare()
    child = multiprocessing.get_context("fork").Process(target=shutdown.pause, args=(60,))
    child.start()
    time.sleep(0.3)
    shutdown.request_stop()
    child.join(timeout=5)
    assert child.exitcode == 0  # it ended within the 5 s joined for; its pause was for 60 s

