"""The simulator's brain: who is calling, what the content is, what Hive would say.

Pure functions only (no Django request, no threads, no clock reads except where a
`now` is passed in), so the scoring can be reasoned about and tested on its own.

Determinism: every score comes from the sha256 of the content (the media bytes, the
URL string or the text), never from randomness, so the same input always scores the
same. Timestamps and task ids do change from call to call, as they do at Hive.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import filetype

from moderation.hive.rules import (
    AUDIO,
    ENDPOINT_RULES,
    GIF,
    IMAGE,
    TEXT_FIELD,
    URL_FIELD,
    VIDEO,
)

# Demo triggers (docs/SIMULATOR.md). Looked for in text_data, url and metadata.
REJECT, REVIEW, APPROVE = "sim:reject", "sim:review", "sim:approve"
FAIL, DOWNLOAD_ERROR = "sim:fail", "sim:download-error"
MARKERS = (FAIL, DOWNLOAD_ERROR, REJECT, REVIEW, APPROVE)

# Score tiers: what share of content lands where when no marker decides.
LOW, MID, HIGH = "low", "mid", "high"
_TIER_RANGES = {LOW: (0.0001, 0.06), MID: (0.52, 0.7), HIGH: (0.93, 0.995)}
_MARKER_LEVELS = {REJECT: 0.98, REVIEW: 0.6, APPROVE: 0.002}
_MARKER_SEVERITY = {REJECT: 3, REVIEW: 2, APPROVE: 0}
# A manual reviewer rejects when the worst class scores at least this.
REVIEW_REJECT_AT = 0.9

# Heads per visual endpoint type: the last class of a head is the benign one, the
# first is the "bad" class a threshold usually watches. Invented but Hive-shaped;
# class sets vary by project at Hive too.
VISUAL_HEADS: dict[str, list[tuple[str, ...]]] = {
    "visual": [
        ("general_nsfw", "general_suggestive", "general_not_nsfw_not_suggestive"),
        ("yes_violence", "no_violence"),
        ("gun_in_hand", "gun_not_in_hand", "no_gun"),
        ("very_bloody", "a_little_bloody", "no_blood"),
        ("yes_drugs", "no_drugs"),
        ("yes_hate_symbols", "no_hate_symbols"),
    ],
    "ocr": [
        ("yes_sexual_text", "no_sexual_text"),
        ("yes_hate_text", "no_hate_text"),
        ("yes_violent_text", "no_violent_text"),
        ("yes_spam_text", "no_spam_text"),
    ],
    "logo": [("yes_logo", "no_logo"), ("yes_watermark", "no_watermark")],
    "scene": [
        ("yes_gambling", "no_gambling"),
        ("yes_alcohol", "no_alcohol"),
        ("yes_smoking", "no_smoking"),
    ],
    "face": [("yes_minor", "no_minor"), ("yes_face_covered", "no_face_covered")],
}
MODELS = {
    "visual": ("hive_visual_moderation", 2),
    "ocr": ("hive_ocr_moderation", 1),
    "logo": ("hive_logo_detection", 1),
    "scene": ("hive_scene_classification", 1),
    "face": ("hive_face_attributes", 1),
    "speech": ("hive_audio_moderation", 1),
    "text": ("hive_text_moderation", 3),
}
# Text and speech: severities 0-3; binary heads are 0 or 3.
SEVERITY_CLASSES = ("sexual", "hate", "violence", "bullying")
BINARY_CLASSES = ("spam", "promotions")
# The head that goes -1 ("not supported for this language") now and then.
SOMETIMES_UNSUPPORTED = "promotions"
PROFANITY = ("damn", "crap", "bastard", "idiot", "moron", "shit", "fuck")

TRANSCRIPTS = {
    LOW: (
        "thanks everyone for joining the call today",
        "the weather looks great for the weekend",
        "please remember to bring the documents tomorrow",
        "this recipe needs two cups of flour",
    ),
    MID: ("you are being a real jerk about this", "shut up and stop wasting my time"),
    HIGH: ("I will hurt you, you worthless idiot", "people like you should disappear"),
}

_VIDEO_EXTENSIONS = {"3gp", "avi", "h264", "mov", "mp4", "ogx", "webm", "mkv", "wmv", "flv", "m4v"}
_AUDIO_EXTENSIONS = {"aif", "aiff", "flac", "mp3", "opus", "ogg", "wav", "wma", "m4a"}
_IMAGE_MIMES = {"image/jpeg", "image/png", "image/bmp", "image/webp", "image/gif"}
_ERROR_MESSAGES = {
    "2101": "Download error: the URL could not be fetched",
    "3100": "Unsupported media type",
    "3300": "Corrupt file: the media could not be decoded",
}


class SimError(Exception):
    """A request Hive would refuse: answered with `status` and a Hive-shaped body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class SimProject:
    """The Hive project a key stands for (see `project_for_key`)."""

    endpoint_type: str
    review: bool
    project_id: int
    user_id: int


@dataclass(frozen=True)
class Content:
    """What was submitted, reduced to what scoring needs (never the media bytes)."""

    field: str  # media | url | text_data
    digest: str  # sha256 hex of the bytes, the URL string or the text
    kind: str | None = None  # media kind; None when not recognised
    mimetype: str | None = None
    size: int = 0
    value: str = ""  # the URL or the text itself
    filename: str = ""
    corrupt: bool = False


@dataclass
class Submission:
    project: SimProject
    content: Content
    metadata: str | None
    callback_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


# --- Keys and errors -------------------------------------------------------


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"return_code": status, "message": message}


def project_for_key(authorization: str) -> SimProject:
    """Read `Authorization: Token sim-<type>[-review][-anything]`.

    The key itself says which kind of Hive project it is, so demos and tests need
    no setup: any key of the right shape is valid."""
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "token" or not key:
        raise SimError(401, "Missing or malformed Authorization header: expected 'Token <api key>'")
    parts = key.split("-")
    if parts[0] != "sim" or len(parts) < 2:
        raise SimError(401, "Invalid API key")
    if parts[1] == "balance":
        raise SimError(405, "Insufficient balance: add credits to this project to continue")
    if parts[1] not in ENDPOINT_RULES:
        raise SimError(401, "Invalid API key")
    number = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return SimProject(
        endpoint_type=parts[1],
        review=len(parts) > 2 and parts[2] == "review",
        project_id=10000 + number % 90000,
        user_id=1000 + number % 9000,
    )


# --- Content ---------------------------------------------------------------


def sniff(head: bytes) -> tuple[str | None, str | None]:
    """Media kind and MIME type from the first bytes (magic numbers), never the name."""
    guess = filetype.guess(head) if head else None
    if guess is None:
        return None, None
    mime = guess.mime
    if mime == "image/gif" or (mime == "image/webp" and _is_animated_webp(head)):
        return GIF, mime
    if mime in _IMAGE_MIMES:
        return IMAGE, mime
    if mime.startswith("video/"):
        return VIDEO, mime
    if mime.startswith("audio/"):
        return AUDIO, mime
    return None, mime


def _is_animated_webp(head: bytes) -> bool:
    # VP8X extended header: flag bit 1 of byte 20 is "animation".
    return head[12:16] == b"VP8X" and len(head) > 20 and bool(head[20] & 0x02)


def looks_truncated(mime: str | None, tail: bytes) -> bool:
    """True when a format with a fixed trailer lacks it (a cut-off upload).

    Only JPEG, PNG and GIF end in a fixed trailer; other corruption goes unseen,
    since the simulator decodes nothing."""
    trailers = {"image/jpeg": b"\xff\xd9", "image/png": b"IEND\xaeB`\x82", "image/gif": b";"}
    trailer = trailers.get(mime or "")
    return trailer is not None and not tail.endswith(trailer)


def kind_from_url(url: str, endpoint_type: str) -> tuple[str, str | None]:
    """The simulator downloads nothing: it guesses the kind from the path's extension."""
    ext = PurePosixPath(urlsplit(url).path).suffix.lstrip(".").lower()
    if ext in _VIDEO_EXTENSIONS:
        return VIDEO, None
    if ext in _AUDIO_EXTENSIONS:
        return AUDIO, None
    if ext == "gif":
        return GIF, "image/gif"
    return (AUDIO if endpoint_type == "speech" else IMAGE), None


def markers_in(*texts: str | None) -> set[str]:
    found = set()
    for text in texts:
        if text:
            lowered = text.lower()
            found.update(marker for marker in MARKERS if marker in lowered)
    return found


def parse_options(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except ValueError:
        raise SimError(400, "options must be a JSON object encoded as a string") from None
    if not isinstance(options, dict):
        raise SimError(400, "options must be a JSON object encoded as a string")
    return options


# --- Deterministic numbers ---------------------------------------------------


class Draws:
    """An endless, reproducible stream of numbers in [0, 1) derived from a digest.

    Hash-based rather than `random.Random(seed)` so it can never change with the
    Python version."""

    def __init__(self, digest: str, salt: str = ""):
        self._seed = f"{digest}:{salt}"
        self._n = 0

    def next(self) -> float:
        self._n += 1
        block = hashlib.sha256(f"{self._seed}:{self._n}".encode()).digest()
        return int.from_bytes(block[:8], "big") / 2**64

    def pick(self, count: int) -> int:
        return min(int(self.next() * count), count - 1)

    def between(self, low: float, high: float) -> float:
        return low + (high - low) * self.next()


def tier_for(digest: str, markers: set[str]) -> str:
    """Most content is benign: 80% low, 12% middling, 8% high, unless a marker decides."""
    if REJECT in markers:
        return HIGH
    if REVIEW in markers:
        return MID
    if APPROVE in markers:
        return LOW
    roll = Draws(digest, "tier").next()
    return LOW if roll < 0.8 else MID if roll < 0.92 else HIGH


def _level(draws: Draws, tier: str, markers: set[str]) -> float:
    for marker, level in _MARKER_LEVELS.items():
        if marker in markers:
            return level
    return draws.between(*_TIER_RANGES[tier])


# --- Results -----------------------------------------------------------------


def iso(now: datetime) -> str:
    return now.isoformat().replace("+00:00", "Z")


def build_result(sub: Submission, task_id: str, now: datetime) -> dict[str, Any]:
    """The full task object, exactly as a sync answer or an async callback carries it."""
    content, project = sub.content, sub.project
    # Media is steered by the metadata only: its bytes and file name are not read for markers.
    markers = markers_in(content.value, sub.metadata)
    entry = _failed_entry_for(sub, markers)
    if entry is None:
        builder = {"text": _text_response, "speech": _speech_response}.get(project.endpoint_type, _visual_response)
        response = {"input": _input(sub, task_id, now), **builder(sub, markers)}
        entry = {"status": {"code": "0", "message": "SUCCESS"}, "response": response}
    else:
        entry["response"] = {"input": _input(sub, task_id, now), **entry["response"]}
    return {
        "id": task_id,
        "code": 200,
        "project_id": project.project_id,
        "user_id": project.user_id,
        "created_on": iso(now),
        "metadata": sub.metadata,
        "from_cache": False,
        "status": [entry],
    }


def _failed_entry_for(sub: Submission, markers: set[str]) -> dict[str, Any] | None:
    """Task-level failures Hive reports inside a 200, as a status entry."""
    content = sub.content
    if FAIL in markers or content.corrupt:
        return _failed_entry("3300")
    if DOWNLOAD_ERROR in markers and content.field == URL_FIELD:
        return _failed_entry("2101")
    rule = ENDPOINT_RULES[sub.project.endpoint_type]
    if content.field != TEXT_FIELD and (content.kind is None or not rule.accepts_media(content.kind)):
        return _failed_entry("3100")
    return None


def _failed_entry(code: str) -> dict[str, Any]:
    message = _ERROR_MESSAGES[code]
    return {
        "status": {"code": code, "message": message, "error_code": code},
        "error_code": code,
        "error_message": message,
        "response": {"output": []},
    }


def _input(sub: Submission, task_id: str, now: datetime) -> dict[str, Any]:
    model, version = MODELS[sub.project.endpoint_type]
    content = sub.content
    info: dict[str, Any] = {
        "id": task_id,
        "created_on": iso(now),
        "project_id": sub.project.project_id,
        "user_id": sub.project.user_id,
        "charge": 0.0,
        "model": model,
        "model_version": version,
        "model_type": "TEXT_CLASSIFICATION" if content.field == TEXT_FIELD else "CATEGORIZATION",
        "hash": content.digest,
    }
    if content.field == TEXT_FIELD:
        info["text"] = content.value
    else:
        info["media"] = {
            "type": (content.kind or "unknown").upper(),
            "mimetype": content.mimetype,
            "filename": content.filename or None,
            "url": content.value or None,
            "size": content.size or None,
        }
    return info


def frame_count(content: Content) -> int:
    """Images: one frame. GIFs: 2-4. Video: 3-8, decided by the hash."""
    if content.kind == GIF:
        return 2 + Draws(content.digest, "frames").pick(3)
    if content.kind == VIDEO:
        return 3 + Draws(content.digest, "frames").pick(6)
    return 1


def _visual_response(sub: Submission, markers: set[str]) -> dict[str, Any]:
    heads = VISUAL_HEADS[sub.project.endpoint_type]
    draws = Draws(sub.content.digest, "visual")
    tier = tier_for(sub.content.digest, markers)
    # Markers push every head; otherwise one head carries the tier, the rest stay benign.
    loud = set(range(len(heads))) if markers & set(_MARKER_LEVELS) else {draws.pick(len(heads))}
    frames = frame_count(sub.content)
    peak = draws.pick(frames)
    output = []
    for time in range(frames):
        classes = []
        for index, head in enumerate(heads):
            if index in loud:
                level = _level(draws, tier, markers)
                if time != peak:
                    level *= draws.between(0.55, 1.0)
            else:
                level = draws.between(*_TIER_RANGES[LOW])
            classes.extend(_head_scores(head, level, draws))
        output.append({"time": time, "classes": classes})
    return {"output": output}


def _head_scores(head: tuple[str, ...], level: float, draws: Draws) -> list[dict[str, Any]]:
    """Scores for one head summing to 1: the first class gets `level`."""
    scores = [round(level, 6)]
    rest = 1.0 - scores[0]
    for _ in head[1:-1]:
        share = round(rest * draws.between(0.0, 0.3), 6)
        scores.append(share)
        rest -= share
    scores.append(round(1.0 - sum(scores), 6))
    return [{"class": name, "score": score} for name, score in zip(head, scores)]


def _severities(draws: Draws, tier: str, markers: set[str], floor: int = 0) -> list[dict[str, Any]]:
    """Text/speech classes: one class carries the tier (every class for a marker)."""
    marked = next((m for m in _MARKER_SEVERITY if m in markers), None)
    loud_index = draws.pick(len(SEVERITY_CLASSES))
    classes = []
    for index, name in enumerate(SEVERITY_CLASSES):
        if marked:
            severity = _MARKER_SEVERITY[marked]
        elif index == loud_index:
            severity = {LOW: draws.pick(2), MID: 2, HIGH: 3}[tier]
        else:
            severity = 0
        if name == "bullying" and not marked:
            severity = max(severity, floor)
        classes.append({"class": name, "score": severity})
    spam = 3 if marked == REJECT or (not marked and tier == HIGH and draws.next() < 0.3) else 0
    classes.append({"class": "spam", "score": spam})
    classes.append({"class": "promotions", "score": 0})
    return classes


def _text_response(sub: Submission, markers: set[str]) -> dict[str, Any]:
    text = sub.content.value
    draws = Draws(sub.content.digest, "text")
    filters = find_spans(text, _PROFANITY_RE, "profanity")
    classes = _severities(draws, tier_for(sub.content.digest, markers), markers, floor=1 if filters else 0)
    language = _language(text)
    if language != "EN" or draws.next() < 0.15:
        _mark_unsupported(classes)
    return {
        "custom_classes": [],
        "text_filters": filters,
        "pii_entities": find_spans(text, _EMAIL_RE, "Email Address") + find_spans(text, _PHONE_RE, "Phone Number"),
        "urls": find_spans(text, _URL_RE, "url"),
        "language": language,
        "moderated_classes": list(SEVERITY_CLASSES + BINARY_CLASSES),
        "output": [
            {"time": 0, "start_char_index": 0, "end_char_index": len(text), "classes": classes}
        ],
    }


def _mark_unsupported(classes: list[dict[str, Any]]) -> None:
    for entry in classes:
        if entry["class"] == SOMETIMES_UNSUPPORTED:
            entry["score"] = -1


def _language(text: str) -> str:
    """A crude guess, enough to show the -1 head: mostly non-ASCII letters is not EN."""
    letters = [c for c in text if c.isalpha()]
    foreign = sum(1 for c in letters if not c.isascii())
    return "EN" if not letters or foreign / len(letters) < 0.3 else "UNSUPPORTED"


def _speech_response(sub: Submission, markers: set[str]) -> dict[str, Any]:
    draws = Draws(sub.content.digest, "speech")
    tier = tier_for(sub.content.digest, markers)
    segments = 1 + draws.pick(4)
    loud = draws.pick(segments)
    output = []
    for index in range(segments):
        seg_tier = tier if index == loud else LOW
        seg_markers = markers if index == loud else set()
        options = TRANSCRIPTS[seg_tier]
        transcript = options[draws.pick(len(options))]
        classes = _severities(draws, seg_tier, seg_markers)
        output.append(
            {
                "time": index * 5,
                "start_time": index * 5,
                "end_time": index * 5 + 5,
                "transcript": transcript,
                "classifications": [{"text": transcript, "classes": classes}],
            }
        )
    return {"language": "EN", "output": output}


_PROFANITY_RE = re.compile(r"\b(" + "|".join(PROFANITY) + r")\b", re.IGNORECASE)
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PHONE_RE = re.compile(r"\+?\d[\d\s().-]{7,}\d")
_URL_RE = re.compile(r"https?://[^\s]+")


def find_spans(text: str, pattern: re.Pattern, kind: str) -> list[dict[str, Any]]:
    """`{value, start_index, end_index, type}`; end_index is exclusive."""
    return [
        {"value": m.group(0), "start_index": m.start(), "end_index": m.end(), "type": kind}
        for m in pattern.finditer(text)
    ]


# --- Async -------------------------------------------------------------------


def async_ack(result: dict[str, Any]) -> dict[str, Any]:
    """Hive answers an async call at once with the task id; the result comes later."""
    return {
        "task_id": result["id"],
        "id": result["id"],
        "code": 200,
        "project_id": result["project_id"],
        "user_id": result["user_id"],
        "created_on": result["created_on"],
        "metadata": result["metadata"],
        "status": "queued",
        "message": "Task queued; the result will be sent to callback_url",
    }


def succeeded(result: dict[str, Any]) -> bool:
    return any(entry["status"]["message"] == "SUCCESS" for entry in result["status"])


def worst_score(result: dict[str, Any], endpoint_type: str) -> float:
    """The highest "bad" score in [0, 1] over every frame and segment.

    Severities (text, speech) count as severity / 3 and -1 as nothing; for visual
    heads the benign last class of each head is not "bad"."""
    worst = 0.0
    benign = {head[-1] for head in VISUAL_HEADS.get(endpoint_type, [])}
    scale = 3.0 if endpoint_type in ("text", "speech") else 1.0
    for entry in result["status"]:
        for item in entry.get("response", {}).get("output", []):
            groups = [item.get("classes", [])]
            groups += [c.get("classes", []) for c in item.get("classifications", [])]
            for classes in groups:
                scores = [c["score"] for c in classes if c["class"] not in benign]
                worst = max([worst] + [max(score, 0) / scale for score in scores])
    return worst


def with_review(sub: Submission, result: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The second callback of a Model + Manual Review project: Hive's human verdict.

    Same task, same id, but a new body: the model result plus `review`."""
    markers = markers_in(sub.content.value, sub.metadata)
    worst = worst_score(result, sub.project.endpoint_type)
    reject = REJECT in markers or worst >= REVIEW_REJECT_AT
    reviewed = dict(result)
    reviewed["review"] = {
        "decision": "reject" if reject else "approve",
        "reviewer": "sim-reviewer",
        "reason": "violates content policy" if reject else "no policy violation found",
        "reviewed_on": iso(now),
    }
    return reviewed
