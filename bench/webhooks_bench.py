#!/usr/bin/env python
"""Webhooks fan-out: does delivering one message to 1,000 partner endpoints hold up
submission processing? (issue 7, "Done when")

Runs the real product on this machine: the django-q2 cluster (`manage.py qcluster`,
--workers workers), the Hive simulator alone (`run_hive_simulator`, with a fixed
latency so that a call costs about what a real one does) and a partner's receiver
(a process of its own: answers 204 and checks one signature in VERIFY_EVERY with
the `standardwebhooks` verifier).

Rounds of two phases, in ABBA order so that a machine's changing load weighs on
both alike, each starting from an empty queue:
- "without": N text submissions are dispatched through the queue; the clock runs
  until all are completed. The 1,000 endpoints are switched off.
- "with": the endpoints are on and one event is fanned out to all of them just
  before the same N submissions are dispatched, so 1,000 deliveries are being
  made while the submissions are processed. With --every-completion the
  submissions belong to the partner with the endpoints, so each completion goes
  to all 1,000 too (a stress far beyond what a partner does).

Layouts: "dedicated" (default, the recommended deployment) runs webhook tasks on
a cluster of their own at low CPU priority (WEBHOOK_Q_CLUSTER=webhooks and a
qcluster with Q_CLUSTER_NAME=webhooks at `nice -n 19`, as the Procfile runs it);
"shared" runs everything on one cluster.
Children stay in this process's session: with Linux's scheduler autogroups, `nice`
only ranks processes within one session.

Prints both rates, their ratio and what the webhooks did meanwhile; exits 1 when
the ratio is below --min-ratio (default 0.9) or a checked signature fails.

    DATABASE_URL=postgres://... REDIS_URL=redis://.../7 .venv/bin/python bench/webhooks_bench.py
        [--submissions 100] [--rounds 4] [--endpoints 1000] [--workers 4] [--latency-ms 100]
        [--layout dedicated|shared] [--every-completion]

Without DATABASE_URL it uses a fresh SQLite file, and the ORM broker without
REDIS_URL. With PostgreSQL, give it an empty database of its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VERIFY_EVERY = 50  # check one request in this many with the standardwebhooks verifier
WEBHOOK_NICENESS = 19  # the dedicated webhook cluster's
RECEIVER_NICENESS = 10  # a real partner's receiver does not use the portal's CPU


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=100, help="submissions per phase and round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of (without, with), in ABBA order")
    parser.add_argument("--endpoints", type=int, default=1000, help="webhook endpoints in the 'with' phase")
    parser.add_argument("--workers", type=int, default=4, help="django-q2 workers (Q_WORKERS)")
    parser.add_argument("--latency-ms", type=int, default=100, help="the simulated Hive's latency per call")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""),
                        help="default: $DATABASE_URL, else a fresh SQLite file")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""),
                        help="default: $REDIS_URL, else the ORM broker")
    parser.add_argument("--every-completion", action="store_true",
                        help="stress: the 'with' submissions belong to the partner with the endpoints, so every "
                             "completion is also sent to all of them (endpoints x submissions deliveries)")
    parser.add_argument("--layout", choices=("dedicated", "shared"), default="dedicated",
                        help="dedicated: webhook tasks on a cluster of their own at low CPU priority "
                             "(the recommended deployment); shared: one cluster for everything")
    parser.add_argument("--min-ratio", type=float, default=0.9)
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- The partner's receiver (a process of its own, like a real partner) ------------------

def serve_receiver(port: int, secrets: dict[str, str], counters: dict) -> None:
    """Answer 204 to everything; verify one request in VERIFY_EVERY."""
    from standardwebhooks import Webhook, WebhookVerificationError

    os.nice(RECEIVER_NICENESS)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with counters["received"].get_lock():
                counters["received"].value += 1
                check = counters["received"].value % VERIFY_EVERY == 1
            if check:
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(secrets[self.path]).verify(body, headers)
                    outcome = "verified"
                except (WebhookVerificationError, KeyError):
                    outcome = "bad_signature"
                with counters[outcome].get_lock():
                    counters[outcome].value += 1
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024  # listen backlog: bursts of concurrent deliveries

    Server(("127.0.0.1", port), Handler).serve_forever()


# --- Harness ---------------------------------------------------------------------------------

class Harness:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="hp-webhooks-bench-"))
        self.sim_port = free_port()
        self.receiver_port = free_port()
        self.children: list[subprocess.Popen] = []
        self.receiver: multiprocessing.Process | None = None
        self.env = {
            "DJANGO_SETTINGS_MODULE": "hiveportal.settings",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(self.tmp), os.environ.get("PYTHONPATH", "")])),
            "HIVE_SIMULATOR": "1",
            "ALLOW_PRIVATE_URLS": "1",  # the receiver is on loopback
            "DJANGO_SECRET_KEY": "bench-only-secret-key-0123456789abcdef0123456789abcdef",
            "DATABASE_URL": args.database_url or f"sqlite:///{self.tmp / 'bench.sqlite3'}",
            "HIVE_API_URL": f"http://127.0.0.1:{self.sim_port}",
            "Q_WORKERS": str(args.workers),
            "WEBHOOK_ENDPOINTS_PER_PARTNER": str(max(args.endpoints, 1)),  # a stress case above the product's cap
            "MEDIA_ROOT": str(self.tmp / "media"),
            "LOG_LEVEL": "WARNING",
            "Q_LOG_LEVEL": "ERROR",
        }
        if args.redis_url:
            self.env["REDIS_URL"] = args.redis_url
        else:
            os.environ.pop("REDIS_URL", None)
        if args.layout == "dedicated":
            # As production sets it (README): every process sends webhook tasks to
            # the `webhooks` cluster, served by its own qcluster (Procfile `webhooks`).
            self.env["WEBHOOK_Q_CLUSTER"] = "webhooks"

    def start_child(self, *argv: str, log: str = "", nice: int = 0, **env: str) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, str(REPO / "manage.py"), *argv], cwd=REPO,
                                 env={**os.environ, **self.env, **env}, process_group=0,
                                 preexec_fn=(lambda: os.nice(nice)) if nice else None,
                                 stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"{log or argv[0]}.log", "w"))
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)  # the process group this harness created for it
        for child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        if self.receiver is not None and self.receiver.is_alive():
            self.receiver.terminate()
            self.receiver.join(5)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - started


def settle() -> None:
    """Wait until the default queue is empty: a phase's leftover no-op tasks must
    not land in the next phase."""
    from django_q.brokers import get_broker

    broker = get_broker()
    wait_for(lambda: broker.queue_size() == 0, timeout=120, what="the queue to empty", poll=0.1)


def run_phase(project, partner, count: int, label: str) -> float:
    """Dispatch `count` new submissions through the queue; seconds until all are completed."""
    from django_q.tasks import async_task

    from moderation.models import Status, Submission

    submissions = Submission.objects.bulk_create([
        Submission(project=project, partner=partner, source="text_data", text_data=f"{label} bench text {n}",
                   media_kind="text", size_bytes=20)
        for n in range(count)
    ])
    ids = [s.pk for s in submissions]
    pending = Submission.objects.filter(pk__in=ids).exclude(status__in=[Status.COMPLETED, Status.FAILED])
    started = time.monotonic()
    for pk in ids:
        async_task("moderation.tasks.dispatch_submission", str(pk))
    wait_for(lambda: not pending.exists(), timeout=600, what=f"the '{label}' submissions", poll=0.05)
    elapsed = time.monotonic() - started
    failed = Submission.objects.filter(pk__in=ids, status=Status.FAILED).count()
    if failed:
        raise SystemExit(f"{failed} '{label}' submissions failed: see the simulator and worker logs")
    return elapsed


def main() -> int:
    args = parse_args()
    harness = Harness(args)
    os.environ.update(harness.env)
    sys.path[:0] = [str(REPO), str(harness.tmp)]
    from bench.common import one_benchmark_at_a_time

    one_benchmark_at_a_time()
    import django

    django.setup()
    import requests
    from django.core.management import call_command
    from django.db import transaction

    from moderation.models import Partner, Project, Status, Submission, WebhookDelivery, WebhookEndpoint
    from moderation.models.webhook import WebhookEvent
    from moderation.services import notify, webhooks

    call_command("migrate", verbosity=0)
    ok = False
    try:
        harness.start_child("run_hive_simulator", "--port", str(harness.sim_port))
        sim = f"http://127.0.0.1:{harness.sim_port}"
        wait_for(lambda: _answers(f"{sim}/stats"), 30, "the simulator")
        requests.post(f"{sim}/control", json={"latency_ms": args.latency_ms}, timeout=5).raise_for_status()

        stamp = int(time.time())
        project = Project.objects.create(slug=f"bench-text-{stamp}", name="Bench text", endpoint_type="text",
                                         review_mode="model_only", delivery="sync",
                                         hive_api_key="sim-text-bench", thresholds={})
        quiet, noisy = (Partner.objects.create(name=f"bench-{kind}-{stamp}") for kind in ("quiet", "noisy"))
        receiver = f"http://127.0.0.1:{harness.receiver_port}"
        print(f"creating {args.endpoints} endpoints ...", flush=True)
        endpoints = [webhooks.create_endpoint(noisy, f"{receiver}/e/{n}", ["submission.completed"])
                     for n in range(args.endpoints)]
        secrets = {f"/e/{n}": e.secret for n, e in enumerate(endpoints)}
        counters = {name: multiprocessing.Value("i", 0) for name in ("received", "verified", "bad_signature")}
        harness.receiver = multiprocessing.Process(target=serve_receiver, daemon=True,
                                                   args=(harness.receiver_port, secrets, counters))
        harness.receiver.start()
        harness.start_child("qcluster")
        if args.layout == "dedicated":
            harness.start_child("qcluster", log="qcluster-webhooks", nice=WEBHOOK_NICENESS, Q_CLUSTER_NAME="webhooks")
        noisy_endpoints = WebhookEndpoint.objects.filter(partner=noisy)

        print(f"{args.rounds} rounds of {args.submissions} submissions without, then with, webhooks; Hive latency "
              f"{args.latency_ms} ms, {args.workers} workers, {args.layout} layout, "
              f"{'PostgreSQL' if args.database_url else 'SQLite'} + {'Redis' if args.redis_url else 'ORM broker'}",
              flush=True)
        noisy_endpoints.update(is_active=False)
        run_phase(project, quiet, 20, "warm-up")
        seconds = {"without": 0.0, "with": 0.0}
        attempts_with = 0
        for round_ in range(1, args.rounds + 1):
            # ABBA order, so a drifting machine load weighs on both alike.
            for phase in ("without", "with") if round_ % 2 else ("with", "without"):
                settle()
                if phase == "without":
                    # The endpoints are switched off: no webhook work is left running.
                    noisy_endpoints.update(is_active=False)
                    time.sleep(1)  # a delivery batch in flight finishes
                    seconds[phase] += run_phase(project, quiet, args.submissions, phase)
                    continue
                # One event to every endpoint just before (the case) and, with
                # --every-completion, every completion to every endpoint as well.
                noisy_endpoints.update(is_active=True)
                with transaction.atomic():  # as a completion does: its event stored with it, the drain woken
                    seed = Submission.objects.create(project=project, partner=noisy, source="text_data",
                                                     status=Status.COMPLETED, text_data=f"seed {round_}")
                    notify.submission_changed(seed.pk, notify.COMPLETED)
                time.sleep(1)  # as above: the same pause before both phases
                before = WebhookDelivery.objects.count()
                seconds[phase] += run_phase(project, noisy if args.every_completion else quiet,
                                            args.submissions, phase)
                attempts_with += WebhookDelivery.objects.count() - before
            print(f"  round {round_}: {WebhookDelivery.objects.count()} webhook attempts so far", flush=True)
        total = args.rounds * args.submissions
        without, with_rate = total / seconds["without"], total / seconds["with"]
        ratio = with_rate / without
        report = {
            "submissions_per_phase": args.submissions, "rounds": args.rounds, "endpoints": args.endpoints,
            "workers": args.workers, "hive_latency_ms": args.latency_ms, "layout": args.layout,
            "every_completion": args.every_completion,
            "database": "postgresql" if args.database_url else "sqlite",
            "broker": "redis" if args.redis_url else "orm",
            "without_webhooks_per_s": round(without, 1), "with_webhooks_per_s": round(with_rate, 1),
            "ratio": round(ratio, 3),
            "webhook_events": WebhookEvent.objects.count(),
            "webhook_attempts_while_processing": attempts_with,
            "webhook_attempts_per_s_while_processing": round(attempts_with / seconds["with"], 1),
            "webhook_failed_attempts": WebhookDelivery.objects.filter(success=False).count(),
            "signatures_checked": counters["verified"].value + counters["bad_signature"].value,
            "signatures_bad": counters["bad_signature"].value,
        }
        print(json.dumps(report, indent=2))
        ok = ratio >= args.min_ratio and report["signatures_bad"] == 0 and report["signatures_checked"] > 0
        if not ok:
            print(f"logs and database in {harness.tmp}")
        # The verdict last: `make bench` (bench/run_all.py) reports the last line.
        print(f"webhooks: {without:.1f} submissions/s without, {with_rate:.1f} with {args.endpoints} endpoints "
              f"({attempts_with} webhook attempts meanwhile, {report['signatures_bad']} bad signatures); "
              f"ratio {ratio:.2f} (goal >= {args.min_ratio}): {'ok' if ok else 'MISSED'}")
        return 0 if ok else 1
    finally:
        harness.stop()
        if ok:
            shutil.rmtree(harness.tmp, ignore_errors=True)


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


if __name__ == "__main__":
    sys.exit(main())
