"""CPU per partner webhook send: `webhooks.send` (signing, the pinned connection
to the checked address, the attempt's deadline, the excerpt) to a loopback
receiver that answers 200 at once. For comparing two versions of the send path
on the same machine, not against a goal (docs/BENCHMARKS.md, session 5).

Run: .venv/bin/python bench/webhook_send_cost.py [--n 1000]
The figure includes the receiver's own thread (same process): compare runs, not
absolute values.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_env, setup_django, workdir  # noqa: E402


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    setup_django(bench_env(workdir("webhook-send")))  # ALLOW_PRIVATE_URLS=1: the receiver is on loopback
    from moderation.services import webhooks

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    attempt = webhooks.Attempt(message_id="msg_bench", endpoint_id=uuid.uuid4(),
                               url=f"http://127.0.0.1:{server.server_port}/in", body='{"type": "bench"}',
                               secrets=(webhooks.new_secret(),), lease=datetime.now(timezone.utc), attempts=1,
                               endpoint_failing=False)
    for _ in range(50):  # imports, first-use caches
        webhooks.send(attempt)
    cpu, wall = time.process_time(), time.perf_counter()
    outcomes = [webhooks.send(attempt) for _ in range(args.n)]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    failed = sum(not o.success for o in outcomes)
    print(f"webhook send: {args.n} sends, {1e3 * cpu / args.n:.2f} ms CPU and {1e3 * wall / args.n:.2f} ms "
          f"wall each (receiver included); {failed} failed")
    server.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
