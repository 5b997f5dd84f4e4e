"""Demo data: projects pointed at the simulator, a partner, demo users, and
sample submissions so that every portal queue has something to show.

Idempotent: every row is looked up by its natural key and brought to the
same state, and the demo partner's key is derived from SECRET_KEY, so a
second run prints the same key and adds no rows. Samples are looked up by
external id and created only when missing (a moderator may have decided
them since; a rerun does not undo that). Their media is drawn here in pure
Python (PNG, GIF, WAV), so the demo needs no files from anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import struct
import wave
import zlib
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from moderation.models import (
    Actor,
    Decision,
    DecisionSource,
    Delivery,
    Partner,
    Project,
    Result,
    ResultSource,
    ReviewMode,
    Status,
    Submission,
)
from moderation.services import audit
from moderation.services.keys import KEY_PREFIX, install_key

DEMO_PARTNER = "demo-partner"

_VISUAL_THRESHOLDS = {
    "general_nsfw": {"review": 0.5, "reject": 0.9},
    "general_suggestive": {"review": 0.7, "reject": 0.97},
    "yes_violence": {"review": 0.5, "reject": 0.9},
}
_TEXT_THRESHOLDS = {
    "sexual": {"review": 0.6, "reject": 1.0},
    "hate": {"review": 0.6, "reject": 1.0},
    "violence": {"review": 0.6, "reject": 1.0},
    "bullying": {"review": 0.6, "reject": 1.0},
}
_REASONS = ["Nudity", "Violence", "Hate", "Spam", "Other policy violation"]

# slug, name, endpoint type, review mode, delivery, thresholds
DEMO_PROJECTS = [
    ("demo-visual-sync", "Demo visual (sync)", "visual", ReviewMode.MODEL_ONLY, Delivery.SYNC, _VISUAL_THRESHOLDS),
    ("demo-visual-async", "Demo visual (async)", "visual", ReviewMode.MODEL_ONLY, Delivery.ASYNC, _VISUAL_THRESHOLDS),
    ("demo-visual-review", "Demo visual (Hive manual review)", "visual", ReviewMode.MODEL_MANUAL_REVIEW,
     Delivery.ASYNC, _VISUAL_THRESHOLDS),
    ("demo-text", "Demo text", "text", ReviewMode.MODEL_ONLY, Delivery.SYNC, _TEXT_THRESHOLDS),
    ("demo-speech", "Demo speech", "speech", ReviewMode.MODEL_ONLY, Delivery.ASYNC, _TEXT_THRESHOLDS),
]

DEMO_USERS = [
    # username, password, superuser, groups
    ("admin", "admin", True, ["lead"]),
    ("moderator", "moderator", False, ["moderator"]),
]


@dataclass(frozen=True)
class DemoSeed:
    projects: list[Project]
    partner: Partner
    api_key: str
    samples_created: int = 0


def demo_api_key() -> str:
    """The demo partner's key, derived from SECRET_KEY so reruns agree."""
    material = hmac.new(settings.SECRET_KEY.encode(), b"hiveportal-demo-partner-key", hashlib.sha256).hexdigest()
    return f"{KEY_PREFIX}_{material[:12]}_{material[12:]}"


def simulator_key(endpoint_type: str, review_mode: str) -> str:
    review = "-review" if review_mode == ReviewMode.MODEL_MANUAL_REVIEW else ""
    return f"sim-{endpoint_type}{review}-demo"


@transaction.atomic
def seed_demo() -> DemoSeed:
    projects = []
    for slug, name, endpoint_type, review_mode, delivery, thresholds in DEMO_PROJECTS:
        project, _ = Project.objects.update_or_create(
            slug=slug,
            defaults=dict(
                name=name,
                endpoint_type=endpoint_type,
                review_mode=review_mode,
                delivery=delivery,
                hive_api_key=simulator_key(endpoint_type, review_mode),
                thresholds=thresholds,
                reject_reasons=_REASONS,
                is_active=True,
            ),
        )
        project.full_clean()
        projects.append(project)

    partner, _ = Partner.objects.get_or_create(name=DEMO_PARTNER)
    partner.projects.add(*projects)
    plaintext = demo_api_key()
    install_key(partner, plaintext, name="demo")

    User = get_user_model()
    users = {}
    for username, password, superuser, groups in DEMO_USERS:
        user, created = User.objects.get_or_create(username=username)
        if created or not user.check_password(password):
            user.set_password(password)
        user.is_staff = superuser
        user.is_superuser = superuser
        user.save()
        for group_name in groups:
            group, _ = Group.objects.get_or_create(name=group_name)
            user.groups.add(group)
        users[username] = user
    # The demo moderator reviews every demo project (leads see all anyway).
    for project in projects:
        project.reviewers.add(users["moderator"])
    created = seed_samples({p.slug: p for p in projects}, partner, users["moderator"])
    return DemoSeed(projects=projects, partner=partner, api_key=plaintext, samples_created=created)


# --- Sample submissions --------------------------------------------------------------

SAMPLE_PREFIX = "demo-sample-"


@dataclass(frozen=True)
class Sample:
    """One demo submission, created directly in its final state."""

    name: str
    project: str
    state: str  # pending, escalated, failed, awaiting, approved, rejected, moderator-rejected
    scores: dict = field(default_factory=dict)
    minutes_ago: int = 10
    picture: str = ""  # a scene for _png, or "gif"
    text: str = ""
    matches: tuple = ()
    audio: bool = False
    url: str = ""
    review: dict | None = None
    note: str = ""
    reason: str = ""
    timeline: tuple = ()
    transcript: str = ""


_SPEECH_TIMELINE = tuple(
    {"time": t, "scores": {"violence": v, "hate": h}}
    for t, v, h in ((0.0, 0.0, 0.0), (0.5, 0.33, 0.0), (1.0, 0.67, 0.33), (1.5, 0.33, 0.0))
)

SAMPLES = [
    Sample("harbour", "demo-visual-sync", "pending", {"general_nsfw": 0.62, "general_suggestive": 0.41,
                                                       "yes_violence": 0.03}, 12, picture="harbour"),
    Sample("night-street", "demo-visual-sync", "pending", {"general_nsfw": 0.08, "yes_violence": 0.71,
                                                           "general_suggestive": 0.05}, 41, picture="night"),
    Sample("meadow", "demo-visual-sync", "pending", {"general_nsfw": 0.55, "general_suggestive": 0.22,
                                                     "yes_violence": 0.01}, 74, picture="meadow"),
    Sample("loop", "demo-visual-async", "pending", {"general_suggestive": 0.78, "general_nsfw": 0.31,
                                                    "yes_violence": 0.02}, 96, picture="gif"),
    Sample("reviewed-by-hive", "demo-visual-review", "pending", {"general_nsfw": 0.66, "yes_violence": 0.12},
           23, picture="dusk", review={"decision": "approve", "reviewer": "sim-reviewer",
                                       "reason": "no policy violation found"}),
    Sample("chat-1", "demo-text", "pending", {"hate": 0.67, "bullying": 0.33, "sexual": 0.0, "violence": 0.0}, 8,
           text="Honestly people like you should just leave this forum, nobody wants your kind here.",
           matches=({"value": "your kind", "start_index": 70, "end_index": 79, "type": "hate"},)),
    Sample("chat-2", "demo-text", "pending", {"bullying": 0.67, "hate": 0.0, "sexual": 0.0, "violence": 0.0}, 65,
           text="Everyone in class laughs at you. Loser. Don't bother coming back tomorrow.",
           matches=({"value": "Loser", "start_index": 33, "end_index": 38, "type": "bullying"},)),
    Sample("voice-note", "demo-speech", "pending", {"violence": 0.67, "hate": 0.33, "sexual": 0.0}, 31,
           audio=True, timeline=_SPEECH_TIMELINE,
           transcript="If you come round here again I will break your stuff, I mean it."),
    Sample("escalated-threat", "demo-text", "escalated", {"violence": 0.67, "hate": 0.0, "bullying": 0.33}, 190,
           text="I know where you park every morning. See you there.",
           note="Reads like a targeted threat but names nobody. Needs a lead's call."),
    Sample("broken-link", "demo-visual-async", "failed", minutes_ago=55,
           url="https://images.example.com/missing/photo-1234.jpg"),
    Sample("in-flight", "demo-visual-review", "awaiting", minutes_ago=4, picture="harbour"),
    Sample("sunny", "demo-visual-sync", "approved", {"general_nsfw": 0.02, "general_suggestive": 0.04}, 130,
           picture="meadow"),
    Sample("explicit", "demo-visual-sync", "rejected", {"general_nsfw": 0.97, "general_suggestive": 0.9}, 140,
           picture="dusk"),
    Sample("slur", "demo-text", "moderator-rejected", {"hate": 0.67, "bullying": 0.0}, 150,
           text="Go back to where you came from.", reason="Hate",
           matches=({"value": "Go back to where you came from", "start_index": 0, "end_index": 30, "type": "hate"},)),
]


def seed_samples(projects: dict[str, Project], partner: Partner, moderator) -> int:
    """Create the samples that are missing; answer how many were created."""
    created = 0
    for sample in SAMPLES:
        external_id = SAMPLE_PREFIX + sample.name
        if Submission.objects.filter(partner=partner, external_id=external_id).exists():
            continue
        _create_sample(sample, projects[sample.project], partner, moderator, external_id)
        created += 1
    _hold_one_for(moderator, partner)
    return created


def _hold_one_for(moderator, partner: Partner) -> None:
    """Fill the moderator's "Mine" queue: a fresh lease on one waiting sample."""
    from moderation.services.review import lease_until

    Submission.objects.filter(partner=partner, external_id=SAMPLE_PREFIX + "harbour", decision=Decision.PENDING,
                              ).update(claimed_by=moderator, claimed_until=lease_until())


def _create_sample(sample: Sample, project: Project, partner: Partner, moderator, external_id: str) -> None:
    now = timezone.now()
    created_at = now - timedelta(minutes=sample.minutes_ago)
    submission = Submission(project=project, partner=partner, external_id=external_id,
                            metadata={"demo": True}, status=Status.COMPLETED)
    content = _attach_content(submission, sample)
    submission.sha256 = hashlib.sha256(content).hexdigest()
    if sample.state == "failed":
        submission.status, submission.error_code = Status.FAILED, "download_failed"
        submission.error = "Hive could not download the URL (HTTP 404). Check that it is public and still exists."
    elif sample.state == "awaiting":
        submission.status, submission.hive_task_id = Status.AWAITING_CALLBACK, f"task-{external_id}"
        submission.dispatched_at = now
    else:
        _apply_verdict(submission, sample, project, moderator, created_at)
    submission.save(force_insert=True)
    # auto_now_add stamps "now"; a demo queue needs items of different ages.
    Submission.objects.filter(pk=submission.pk).update(created_at=created_at)
    submission.created_at = created_at
    audit.record("submission.received", actor=Actor.PARTNER, partner=partner, submission=submission,
                 source=submission.source, media_kind=submission.media_kind, demo=True, at=created_at)
    if submission.scores is not None:
        _store_result(submission, sample, project)
    _record_decision(submission, sample, moderator)


def _attach_content(submission: Submission, sample: Sample) -> bytes:
    if sample.text:
        submission.source, submission.text_data, submission.media_kind = "text_data", sample.text, "text"
        submission.size_bytes = len(sample.text.encode())
        return sample.text.encode()
    if sample.url:
        submission.source, submission.url = "url", sample.url
        return sample.url.encode()
    if sample.audio:
        data, extension, kind, mime = _wav(), "wav", "audio", "audio/x-wav"
    elif sample.picture == "gif":
        data, extension, kind, mime = _gif(), "gif", "gif", "image/gif"
    else:
        data, extension, kind, mime = _png(sample.picture), "png", "image", "image/png"
    submission.source, submission.media_kind, submission.media_mime = "media", kind, mime
    submission.size_bytes = len(data)
    submission.media.save(f"demo.{extension}", ContentFile(data), save=False)
    return data


def _apply_verdict(submission: Submission, sample: Sample, project: Project, moderator, created_at) -> None:
    scores = sample.scores
    top = max(scores, key=lambda c: (scores[c], c))
    submission.scores, submission.top_class, submission.top_score = scores, top, scores[top]
    submission.completed_at = created_at + timedelta(seconds=3)
    decided_at = created_at + timedelta(minutes=2)
    if sample.state == "pending":
        submission.decision, submission.decision_source = Decision.PENDING, DecisionSource.AUTO
    elif sample.state in ("approved", "rejected"):
        submission.decision, submission.decision_source = sample.state, DecisionSource.AUTO
        submission.decided_at = submission.completed_at
    else:
        submission.decision = Decision.ESCALATED if sample.state == "escalated" else Decision.REJECTED
        submission.decision_source, submission.decided_by = DecisionSource.MODERATOR, moderator
        submission.decided_at, submission.decision_note = decided_at, sample.note
        submission.decision_reason = sample.reason


def _store_result(submission: Submission, sample: Sample, project: Project) -> None:
    task_id = f"task-{submission.external_id}"
    output = [{"time": f["time"], "classes": [{"class": c, "score": s} for c, s in f["scores"].items()]}
              for f in sample.timeline] or [{"time": 0, "classes": [{"class": c, "score": s}
                                                                    for c, s in sample.scores.items()]}]
    raw = {"id": task_id, "status": [{"status": {"code": "0", "message": "SUCCESS"},
                                      "response": {"output": output}}]}
    source = ResultSource.SYNC if project.delivery == Delivery.SYNC else ResultSource.CALLBACK
    common = dict(submission=submission, source=source, hive_task_id=task_id, received_at=submission.completed_at,
                  scores=submission.scores, top_class=submission.top_class, top_score=submission.top_score,
                  timeline=list(sample.timeline), transcript=sample.transcript,
                  text_matches=list(sample.matches), model_version="demo-model-1")
    Result.objects.create(fingerprint=hashlib.sha256(f"{task_id}:model".encode()).hexdigest(),
                          raw=json.dumps(raw), **common)
    audit.record("result.received", actor=Actor.HIVE, submission=submission, top_class=submission.top_class,
                 top_score=submission.top_score, task_id=task_id, at=submission.completed_at)
    if sample.review is not None:
        Result.objects.create(fingerprint=hashlib.sha256(f"{task_id}:review".encode()).hexdigest(),
                              raw=json.dumps({**raw, "review": sample.review}), review=sample.review, **common)
        audit.record("result.additional", actor=Actor.HIVE, submission=submission, review=sample.review,
                     task_id=task_id, at=submission.completed_at)


def _record_decision(submission: Submission, sample: Sample, moderator) -> None:
    if submission.decision is None:
        return
    routed = Decision.PENDING if submission.decision_source == DecisionSource.MODERATOR else submission.decision
    audit.record("decision.routed", submission=submission, decision=routed, demo=True,
                 at=submission.completed_at)
    if submission.decision_source == DecisionSource.MODERATOR:
        from moderation.services.review import triggered_classes

        audit.record("decision.moderator", actor=Actor.MODERATOR, submission=submission, user=moderator,
                     decision=submission.decision, previous=Decision.PENDING, reason=submission.decision_reason,
                     note=submission.decision_note, triggered=triggered_classes(submission), demo=True,
                     at=submission.decided_at)


# --- Demo media, drawn in pure Python ----------------------------------------------------

_SCENES = {
    # top colour, bottom colour, disc colour, disc centre (fractions), disc radius (fraction of height)
    "harbour": ((92, 140, 190), (30, 60, 90), (240, 200, 120), (0.72, 0.3), 0.12),
    "night": ((10, 14, 40), (35, 30, 60), (225, 225, 200), (0.25, 0.25), 0.09),
    "meadow": ((150, 195, 235), (70, 130, 60), (255, 230, 140), (0.8, 0.2), 0.1),
    "dusk": ((240, 140, 90), (70, 40, 90), (255, 210, 150), (0.5, 0.62), 0.18),
}


def _png(scene: str, width: int = 320, height: int = 240) -> bytes:
    """A soft landscape: sky gradient, a sun or moon, gentle hills."""
    top, bottom, disc, (cx, cy), radius = _SCENES.get(scene, _SCENES["harbour"])
    rows = bytearray()
    for y in range(height):
        t = y / (height - 1)
        sky = [int(a + (b - a) * t) for a, b in zip(top, bottom)]
        rows.append(0)
        for x in range(width):
            hill = height * (0.72 + 0.06 * math.sin(x / width * 6.3 + len(scene)))
            if y > hill:
                pixel = [int(c * 0.55) for c in bottom]
            elif (x - cx * width) ** 2 + (y - cy * height) ** 2 < (radius * height) ** 2:
                pixel = disc
            else:
                pixel = sky
            rows.extend(pixel)
    return _png_bytes(width, height, bytes(rows))


def _png_bytes(width: int, height: int, raw: bytes) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def _gif(width: int = 160, height: int = 120, frames: int = 6) -> bytes:
    """An animated GIF (a ball crossing a gradient). LZW is written
    "uncompressed": 7-bit literals in 8-bit codes, with a clear code often
    enough that the code size never grows; every decoder reads it."""
    palette = b"".join(bytes((20 + i, 40 + i, 90 + i)) if i < 120 else bytes((235, 190, 90)) for i in range(128))
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF6, 0, 0) + palette)
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for frame in range(frames):
        bx, by = width * (0.15 + 0.7 * frame / (frames - 1)), height * (0.5 - 0.25 * math.sin(frame / 1.6))
        pixels = bytes(
            127 if (x - bx) ** 2 + (y - by) ** 2 < 196 else min(119, (x + y) * 119 // (width + height))
            for y in range(height) for x in range(width)
        )
        out += b"\x21\xf9\x04\x04" + struct.pack("<H", 20) + b"\x00\x00"  # 0.2 s per frame
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x07"
        out += _sub_blocks(_lzw_uncompressed(pixels))
    return bytes(out + b"\x3b")


def _lzw_uncompressed(pixels: bytes, clear: int = 128, end: int = 129) -> bytes:
    codes = bytearray()
    for start in range(0, len(pixels), 100):
        codes.append(clear)
        codes.extend(pixels[start:start + 100])
    codes.append(end)
    return bytes(codes)


def _sub_blocks(data: bytes) -> bytes:
    blocks = b"".join(bytes((len(data[i:i + 255]),)) + data[i:i + 255] for i in range(0, len(data), 255))
    return blocks + b"\x00"


def _wav(seconds: float = 2.0, rate: int = 8000) -> bytes:
    """A quiet two-tone chime: enough for the audio player to have something."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = bytearray()
        for i in range(int(seconds * rate)):
            t = i / rate
            tone = 440 if t < seconds / 2 else 554
            envelope = min(1.0, (seconds - t) * 4, t * 20)
            frames += struct.pack("<h", int(6000 * envelope * math.sin(2 * math.pi * tone * t)))
        out.writeframes(bytes(frames))
    return buffer.getvalue()
