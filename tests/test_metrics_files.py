"""Prometheus multiprocess files: those of exited processes are folded into one
file per type, totals unchanged, so a host whose workers recycle does not
gather a file per process it ever ran (scrapes slowing down, tmpfs filling).

The writers are real processes (prometheus_client picks its file-backed values
when it is imported with PROMETHEUS_MULTIPROC_DIR set, which this process is not).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.multiprocess import MultiProcessCollector

from moderation.ops import metrics_files
from tests.conftest import REPO

WRITER = textwrap.dedent("""
    import os, sys
    from prometheus_client import Counter, Histogram
    from moderation.ops import metrics_files
    if sys.argv[1] == "locked":
        metrics_files.hold_alive_lock()
    calls = Counter("demo_calls", "Calls.", ["outcome"])
    seconds = Histogram("demo_seconds", "Seconds.", buckets=(0.1, 1, 10))

    def work(n):
        for i in range(n):
            calls.labels("ok" if i % 3 else "retry").inc()
            seconds.observe(i / 10)

    work(int(sys.argv[2]))
    if sys.argv[3] == "fork":  # a child that counts and exits, as a recycled worker does
        child = os.fork()
        if child == 0:
            work(5)
            os._exit(0)
        os.waitpid(child, 0)
    print(os.getpid(), flush=True)
    if sys.argv[4] == "stay":
        sys.stdin.readline()  # alive until told
        work(4)
""")


@pytest.fixture
def directory(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return tmp_path


def writer(directory, count: int, *, locked: bool = True, fork: bool = False, stay: bool = False):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(REPO)}
    args = ["locked" if locked else "unlocked", str(count), "fork" if fork else "-", "stay" if stay else "-"]
    process = subprocess.Popen([sys.executable, "-c", WRITER, *args], env=env, cwd=REPO,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = process.stdout.readline().strip()
    if not stay:
        assert process.wait(timeout=30) == 0
    return process, pid


def scrape(directory) -> str:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(directory))
    return generate_latest(registry).decode()


def samples(directory) -> dict:
    """Every sample's value by name and labels (the order of a scrape's lines is not fixed)."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(scrape(directory)) for sample in family.samples}


def db_files(directory) -> set[str]:
    return {path.name for path in directory.glob("*.db")}


def test_exited_processes_files_are_folded_into_one_per_type_with_the_same_totals(directory):
    for count in (10, 20, 30):
        writer(directory, count)
    live, live_pid = writer(directory, 7, stay=True)
    before = samples(directory)
    assert len(db_files(directory)) == 8
    assert before[("demo_calls_total", (("outcome", "ok"),))] == 43

    assert metrics_files.compact(str(directory)) == 3
    assert db_files(directory) == {"counter_archive.db", f"counter_{live_pid}.db",
                                   "histogram_archive.db", f"histogram_{live_pid}.db"}
    assert samples(directory) == pytest.approx(before)  # every total, bucket, sum and count

    live.communicate("go on\n", timeout=30)  # counts 4 more, then exits
    assert metrics_files.compact(str(directory)) == 1
    assert db_files(directory) == {"counter_archive.db", "histogram_archive.db"}
    after = scrape(directory)
    assert 'demo_calls_total{outcome="ok"} 45.0' in after and 'demo_calls_total{outcome="retry"} 26.0' in after
    assert 'demo_seconds_count 71.0' in after
    assert not list(directory.glob("alive_*"))


def test_a_forked_child_is_folded_when_it_exits_and_its_live_parent_is_not(directory):
    parent, parent_pid = writer(directory, 3, fork=True, stay=True)
    assert metrics_files.compact(str(directory)) == 1  # the child
    assert db_files(directory) == {"counter_archive.db", f"counter_{parent_pid}.db",
                                   "histogram_archive.db", f"histogram_{parent_pid}.db"}
    assert "demo_seconds_count 8.0" in scrape(directory)
    parent.communicate("\n", timeout=30)


def test_files_of_a_process_that_never_took_the_lock_are_left_alone(directory):
    _, pid = writer(directory, 5, locked=False)
    assert metrics_files.compact(str(directory)) == 0
    assert db_files(directory) == {f"counter_{pid}.db", f"histogram_{pid}.db"}


def test_metrics_endpoint_folds_exited_processes_and_reports_their_totals(directory, client, settings, db):
    settings.METRICS_TOKEN = "scrape-token"
    for count in (6, 9):
        writer(directory, count)
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'demo_calls_total{outcome="ok"} 10.0' in body and "demo_seconds_count 15.0" in body
    assert db_files(directory) == {"counter_archive.db", "histogram_archive.db"}


def test_commands_still_run_when_the_metrics_directory_does_not_exist_yet(tmp_path):
    # README step 4 runs `migrate` before the web unit creates /dev/shm/hiveportal-metrics.
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "not-made-yet"), "HIVE_SIMULATOR": "1",
           "DJANGO_SETTINGS_MODULE": "hiveportal.settings"}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "could not mark the process alive" in done.stderr + done.stdout
