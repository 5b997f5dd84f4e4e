"""`make bench`: run every benchmark, print one summary table, write it to
docs/BENCHMARKS.md with the machine and the date; exit non-zero when a goal
is missed. Each benchmark is a script that prints its verdict as its last
line and exits non-zero when it misses its goal.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# (measure, command): ratios measured side by side in one run.
BENCHMARKS = [
    ("intake, SQLite + ORM broker", ["bench/intake_bench.py", "--db", "sqlite"]),
    ("intake, PostgreSQL + Redis", ["bench/intake_bench.py", "--db", "postgres"]),
    ("client memory, 500 MB video", ["bench/client_memory.py"]),
    ("end-to-end memory, 500 MB video (web + worker)", ["bench/memory_bench.py"]),
    ("dispatch, SQLite + ORM broker", ["bench/dispatch.py", "--db", "sqlite"]),
    ("dispatch, PostgreSQL + Redis", ["bench/dispatch.py", "--db", "postgres"]),
    ("callbacks, SQLite + ORM broker", ["bench/callbacks_bench.py", "--db", "sqlite"]),
    ("callbacks, PostgreSQL + Redis", ["bench/callbacks_bench.py", "--db", "postgres"]),
    ("webhooks fan-out to 1,000 endpoints", ["bench/webhooks_bench.py"]),
    ("admin and portal at 1k vs 1M submissions", ["bench/admin_bench.py"]),
]


def run(command: list[str]) -> tuple[bool, str, float]:
    started = time.monotonic()
    if not (REPO / command[0]).exists():
        return False, f"missing: {command[0]}", 0.0
    done = subprocess.run([PYTHON, *command], cwd=REPO, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    verdict = lines[-1] if lines else (done.stderr.strip().splitlines() or ["no output"])[-1]
    return done.returncode == 0, verdict, time.monotonic() - started


def main() -> int:
    only = sys.argv[1:]
    rows = []
    for measure, command in BENCHMARKS:
        if only and not any(word in measure for word in only):
            continue
        print(f"running {measure} ...", flush=True)
        ok, verdict, seconds = run(command)
        rows.append((measure, " ".join(["python", *command]), verdict, ok, seconds))
        print(f"  {'ok' if ok else 'MISSED'}: {verdict}", flush=True)
    machine = f"{platform.node()} · {os.cpu_count()} cores · {platform.machine()} · Python {platform.python_version()}"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table = ["| measure | result | ok? | command |", "|---|---|---|---|"]
    table += [f"| {m} | {v} | {'ok' if ok else '**missed**'} | `{c}` |" for m, c, v, ok, _ in rows]
    print("\n" + "\n".join(table))
    section = (f"## make bench, {now}\n\nMachine: {machine}. Command: `make bench`.\n\n" + "\n".join(table) + "\n")
    path = REPO / "docs" / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nRun by hand, never by the test suite.\n\n"
    marker = "<!-- make bench -->"
    head = text.split(marker)[0].rstrip() + "\n\n"
    path.write_text(head + marker + "\n" + section)
    return 0 if all(ok for *_, ok, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
