"""Intake throughput: partner submissions per second through the whole partner API,
as a ratio of a bare upload view in the same server. Goal: >= 0.8.

A: `POST /api/v1/projects/<slug>/submissions/`, multipart with a real PNG
   (shared/media-samples/sample.png): key authentication (`Authorization: Token`),
   the per-partner throttle, validation, sniffing, the sha256, storage, the
   submission row and its audit event, and the dispatch task enqueued on commit.
B: `bench/bare/store/` (bench/urls.py): the same request body; Django parses the
   multipart, `default_storage.save()` stores the file, 201. Same middleware.

Both run in one gunicorn (gunicorn.conf.py, `--web-workers` processes x `--web-threads`
threads, DJANGO_SETTINGS_MODULE=bench.settings), measured side by side in ABBA rounds
of `--n` requests each from `--threads` client threads (keep-alive connections); the
rate of each side is its requests over its rounds' wall time. No django-q2 worker: the
dispatch tasks just queue (checked at the end: one per submission).

Throttling never kicks in: API_THROTTLE_RATE (the per-partner rate, default 6000/min)
is set to 100000000/min for the server, so every request runs the throttle's cache
read and write and none is refused (a 429 would fail the run).

Run: .venv/bin/python bench/intake_bench.py [--db sqlite|postgres] [--rounds 4] [--n 300] [--threads 8]
         [--photo-mb 4] (a 4 MB JPEG instead of the 469 B PNG)
The postgres variant uses PostgreSQL + Redis on loopback (throwaway database
hiveportal_bench_intake, Redis db 10, flushed): Redis is then the cache (throttle)
and the django-q2 broker.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    REPO, Sent, abba, bench_env, manage, post_all, setup_django, start_gunicorn, throwaway_backends,
    workdir,
)

GOAL = 0.8
SAMPLE = REPO.parent / "shared" / "media-samples" / "sample.png"
SLUG = "bench-intake"


def photo(megabytes: float) -> bytes:
    """A real JPEG of about `megabytes` MB: shared/media-samples/sample.jpg with
    comment segments (random bytes, seeded) after its SOI marker, the way camera
    JPEGs carry their metadata. Sniffing and the size checks see a JPEG."""
    jpeg = (REPO.parent / "shared" / "media-samples" / "sample.jpg").read_bytes()
    random_bytes = random.Random(0).randbytes
    segments, room = [], int(megabytes * 2**20) - len(jpeg)
    while room > 4:
        size = min(65533, room - 4)
        segments.append(b"\xff\xfe" + (size + 2).to_bytes(2, "big") + random_bytes(size))
        room -= size + 4
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def multipart(media: bytes, filename: str, external_id: str) -> tuple[bytes, str]:
    """One multipart/form-data body, built once and sent as it is by every request."""
    boundary = f"bench-{uuid.uuid4().hex}"
    body = b"".join([
        f"--{boundary}\r\n".encode(),
        b'Content-Disposition: form-data; name="external_id"\r\n\r\n',
        external_id.encode(), b"\r\n",
        f"--{boundary}\r\n".encode(),
        f'Content-Disposition: form-data; name="media"; filename="{filename}"\r\n'.encode(),
        b"Content-Type: application/octet-stream\r\n\r\n",
        media, b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ])
    return body, f"multipart/form-data; boundary={boundary}"


def seed() -> str:
    """A visual sync project and a partner with access to it; returns the partner's API key."""
    from moderation.models import Delivery, Partner, Project
    from moderation.services.keys import issue_key

    project = Project.objects.create(slug=SLUG, name="Bench intake", endpoint_type="visual", delivery=Delivery.SYNC,
                                     hive_api_key="sim-visual-bench",
                                     thresholds={"general_nsfw": {"review": 0.5, "reject": 0.9}})
    partner = Partner.objects.create(name="bench-intake")
    partner.projects.add(project)
    return issue_key(partner).plaintext


def measure(args) -> dict:
    work = workdir(f"intake-{args.db}")
    database_url, redis_url = throwaway_backends(args.db, "hiveportal_bench_intake", 10)
    env = bench_env(work, database_url, redis_url, DJANGO_SETTINGS_MODULE="bench.settings",
                    API_THROTTLE_RATE="100000000/min")
    manage(env, "migrate", "--noinput")
    setup_django(env)
    key = seed()

    media = photo(args.photo_mb) if args.photo_mb else args.media.read_bytes()
    body, content_type = multipart(media, upload_name(args), "bench")
    full = (f"/api/v1/projects/{SLUG}/submissions/", body,
            {"Authorization": f"Token {key}", "Content-Type": content_type})
    bare = ("/bench/bare/store/", body, {"Content-Type": content_type})
    expected = {"A": 202, "B": 201}

    web, url = start_gunicorn(env, work, workers=args.web_workers, threads=args.web_threads)
    sides = {"A": Sent(), "B": Sent()}
    warm = {"A": Sent(), "B": Sent()}
    try:
        for side, request in (("A", full), ("B", bare)):  # imports, connections, first-use caches
            warm[side] = post_all(url, [request] * args.warmup, args.threads)
        for side in abba(args.rounds):
            sides[side].add(post_all(url, [full if side == "A" else bare] * args.n, args.threads))
    finally:
        web.stop()

    from django_q.brokers import get_broker

    from moderation.models import Status, Submission

    sent_full = args.warmup + args.rounds * args.n
    problems = []
    for side in "AB":
        statuses = sides[side].statuses + warm[side].statuses
        wrong = {status: count for status, count in statuses.items() if status != expected[side]}
        if wrong:
            problems.append(f"{side}: statuses {dict(statuses)} (expected all {expected[side]})")
    stored = Submission.objects.filter(project__slug=SLUG).count()
    queued = Submission.objects.filter(project__slug=SLUG, status=Status.QUEUED).count()
    tasks = get_broker().queue_size()
    if not (stored == queued == sent_full and tasks >= sent_full):
        problems.append(f"{stored} submissions ({queued} queued), {tasks} tasks queued; expected {sent_full} each")
    if not problems:
        shutil.rmtree(work, ignore_errors=True)
    else:
        problems.append(f"logs in {work}")
    a, b = sides["A"], sides["B"]
    return {"db": args.db, "a": a, "b": b, "ratio": a.rate / b.rate if b.rate else 0.0, "problems": problems,
            "bytes": len(media)}


def upload_name(args) -> str:
    return f"photo-{args.photo_mb:g}mb.jpg" if args.photo_mb else args.media.name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per side, ABBA order (default 4)")
    parser.add_argument("--n", type=int, default=300, help="requests per round (default 300)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests per side first (default 50)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes (default 2)")
    parser.add_argument("--web-threads", type=int, default=8, help="threads per gunicorn process (default 8)")
    parser.add_argument("--media", type=Path, default=SAMPLE, help="the uploaded file (default sample.png)")
    parser.add_argument("--photo-mb", type=float, default=0, help="upload a JPEG of this many MB instead (photo())")
    args = parser.parse_args()
    result = measure(args)
    a, b = result["a"], result["b"]
    for name, sent in (("A partner API", a), ("B bare store", b)):
        print(sent.summary(name))
    for problem in result["problems"]:
        print(f"  problem: {problem}")
    ok = result["ratio"] >= GOAL and not result["problems"]
    print(f"intake [{result['db']}]: {a.rate:.0f}/s through the partner API vs {b.rate:.0f}/s bare store "
          f"({args.rounds}x{args.n} each, {args.threads} threads, {result['bytes']:,} B {upload_name(args)}); "
          f"ratio {result['ratio']:.2f} (goal >= {GOAL}){'; checks FAILED' if result['problems'] else ''}: "
          f"{'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
