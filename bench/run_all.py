"""`make bench`: run every benchmark, print one summary table, write it to
docs/BENCHMARKS.md with the machine and the date; exit non-zero when a goal
is missed. Each benchmark is a script that prints its verdict as its last
line and exits non-zero when it misses its goal.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# (measure, goal, command, judged): ratios measured side by side in one run. A row
# that is not judged is shown for information and does not set the exit status.
BENCHMARKS = [
    ("intake, SQLite + ORM broker", "API / bare >= 0.8", ["bench/intake_bench.py", "--db", "sqlite"], True),
    ("intake, PostgreSQL + Redis", "API / bare >= 0.8", ["bench/intake_bench.py", "--db", "postgres"], True),
    # The same at the size of a phone photo, where moving the bytes outweighs the
    # API's fixed cost per request (docs/BENCHMARKS.md, "Intake throughput").
    ("intake, 4 MB photo, SQLite + ORM broker (information)", "API / bare >= 0.8",
     ["bench/intake_bench.py", "--db", "sqlite", "--photo-mb", "4", "--n", "150"], False),
    ("intake, 4 MB photo, PostgreSQL + Redis (information)", "API / bare >= 0.8",
     ["bench/intake_bench.py", "--db", "postgres", "--photo-mb", "4", "--n", "150"], False),
    ("client memory, 500 MB video", "< 64 MB", ["bench/client_memory.py"], True),
    ("end-to-end memory, 500 MB video (web + worker)", "< 64 MB each", ["bench/memory_bench.py"], True),
    ("dispatch, SQLite + ORM broker", ">= 0.9 of limit / latency", ["bench/dispatch.py", "--db", "sqlite"], True),
    ("dispatch, PostgreSQL + Redis", ">= 0.9 of limit / latency", ["bench/dispatch.py", "--db", "postgres"], True),
    # SQLite has one writer at a time: a callback's INSERT waits for the worker's
    # transactions, and SQLite's busy handler sleeps in steps of up to 100 ms. The
    # embedded mode is for demos and small installs; the goal is judged on the
    # production path.
    ("callbacks, SQLite + ORM broker (information)", "p99 / bare p99 <= 2",
     ["bench/callbacks_bench.py", "--db", "sqlite"], False),
    ("callbacks, PostgreSQL + Redis", "p99 / bare p99 <= 2", ["bench/callbacks_bench.py", "--db", "postgres"], True),
    ("webhooks fan-out to 1,000 endpoints", "with / without >= 0.9", ["bench/webhooks_bench.py"], True),
    ("admin and portal at 1k vs 1M submissions", "<= 1.5x, same queries", ["bench/admin_bench.py"], True),
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", metavar="WORD",
                        help="run only the benchmarks whose measure contains one of these words (e.g. callbacks); "
                             "a subset is printed, and docs/BENCHMARKS.md is left as it is")
    only = parser.parse_args().only
    rows = []
    for measure, goal, command, judged in BENCHMARKS:
        if only and not any(word in measure for word in only):
            continue
        print(f"running {measure} ...", flush=True)
        ok, verdict, seconds = run(command)
        rows.append((measure, goal, " ".join(["python", *command]), verdict, ok, judged))
        print(f"  {'ok' if ok else 'MISSED'}: {verdict}", flush=True)
    machine = f"{platform.node()} · {os.cpu_count()} cores · {platform.machine()} · Python {platform.python_version()}"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table = ["| measure | result | goal | ok? | command |", "|---|---|---|---|---|"]
    for measure, goal, command, verdict, ok, judged in rows:
        mark = "ok" if ok else ("**missed**" if judged else "missed (information)")
        table.append(f"| {measure} | {verdict} | {goal} | {mark} | `{command}` |")
    print("\n" + "\n".join(table))
    if len(rows) < len(BENCHMARKS):
        print("\n(a subset: docs/BENCHMARKS.md keeps the last full run's table)")
        return 0 if rows and all(ok for *_, ok, judged in rows if judged) else 1
    section = (f"## make bench, {now}\n\nMachine: {machine}. Command: `make bench`.\n\n" + "\n".join(table) + "\n")
    path = REPO / "docs" / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nRun by hand, never by the test suite.\n\n"
    marker = "<!-- make bench -->"
    head = text.split(marker)[0].rstrip() + "\n\n"
    path.write_text(head + marker + "\n" + section)
    return 0 if all(ok for *_, ok, judged in rows if judged) else 1


if __name__ == "__main__":
    sys.exit(main())
