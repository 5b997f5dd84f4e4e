"""A 500 MB video through the Hive client to the simulator: the client's peak
RSS growth must stay under 64 MB (the body is streamed, never built in memory).

Run: .venv/bin/python bench/client_memory.py [--mb 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, bench_env, rss_kb, setup_django, start_simulator, workdir  # noqa: E402

GOAL_MB = 64


def make_video(path: Path, size_mb: int) -> None:
    """A real MP4 header followed by filler, written in chunks."""
    header = (REPO.parent / "shared" / "media-samples" / "sample.mp4").read_bytes()
    chunk = b"\0" * (1 << 20)
    with open(path, "wb") as out:
        out.write(header)
        for _ in range(size_mb):
            out.write(chunk)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=500)
    args = parser.parse_args()
    work = workdir("client-memory")
    env = bench_env(work)
    simulator, url = start_simulator(env, work)
    try:
        setup_django(env)
        from moderation.hive.client import Content, HiveClient

        video = work / "big.mp4"
        make_video(video, args.mb)
        before = rss_kb(os.getpid())
        started = time.monotonic()
        with open(video, "rb") as handle:
            answer = HiveClient(api_key="sim-visual-bench", base_url=url, read_timeout=600).submit_sync(
                Content(media=handle, media_name="big.mp4", media_content_type="video/mp4"), metadata="bench")
        elapsed = time.monotonic() - started
        growth_mb = (rss_kb(os.getpid(), "VmHWM") - before) / 1024
    finally:
        simulator.stop()
    size = video.stat().st_size / 2**20
    ok = growth_mb < GOAL_MB and answer.status_code == 200
    print(f"client: sent {size:.0f} MB in {elapsed:.1f} s; peak RSS growth {growth_mb:.1f} MB "
          f"(goal < {GOAL_MB} MB): {'ok' if ok else 'MISSED'}")
    video.unlink()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
