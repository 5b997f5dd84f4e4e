"""Turn Hive's result object into what the portal stores and routes on.

Hive's result (HIVE_API.md) is a list of status entries, each with frames,
bounding boxes, speech segments or text severities. The portal only needs
`{class: max score in [0, 1]}`, the top class, a timeline for video/audio and
the few extras a moderator reads. Class names come from the result, never from
here: they vary by project and model version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from moderation.hive.errors import (
    GENERIC_ERROR_CODE,
    HiveError,
    is_download_error_code,
    is_permanent_error_code,
)

logger = logging.getLogger("moderation.hive")

# Highest text/speech severity; scores on that scale are divided by it.
MAX_SEVERITY = 3.0
# Top-level keys Hive adds when an operator re-sends a callback.
RESEND_MARKERS = ("resent_on", "resent_by")
_TEXT_KEYS = ("text_filters", "moderated_classes", "pii_entities", "language")
_MODEL_VERSION_LIMIT = 100


@dataclass(frozen=True)
class Normalised:
    scores: dict[str, float] = field(default_factory=dict)
    top_class: str | None = None
    top_score: float | None = None
    timeline: list[dict] = field(default_factory=list)
    transcript: str = ""
    text_matches: list[dict] = field(default_factory=list)
    failed_entries: list[dict] = field(default_factory=list)
    model_version: str = ""
    task_id: str = ""
    metadata: str | None = None
    # Hive's manual-review verdict; its shape is undocumented, so kept as given.
    review: dict | None = None


def fingerprint(result: dict) -> str:
    """sha256 of the canonical result, blind to Hive's resend markers, so a
    re-sent callback is recognised as the one we already have."""
    if isinstance(result, dict):
        result = {k: v for k, v in result.items() if k not in RESEND_MARKERS}
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def normalise(result: dict, *, severity_scale: bool | None = None) -> Normalised:
    """Summarise one result object; raise HiveError if it holds no usable result.

    `severity_scale` forces (True) or forbids (False) reading scores as 0-3
    severities; by default each status entry's shape decides."""
    if not isinstance(result, dict):
        raise HiveError(f"Hive result is not a JSON object but {type(result).__name__}", permanent=False)
    entries = _as_list(result.get("status"))
    review = _review(result, entries)
    if not entries:
        _raise_task_error(result)
        if review is None:
            raise HiveError("Hive result has no status entries", permanent=False)

    acc = _Accumulator()
    failed: list[dict] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            logger.warning("Hive status entry %s is not an object: %.200r", index, entry)
            failed.append({"index": index, "error_code": "", "message": "status entry is not an object"})
        elif _succeeded(entry):
            response = entry.get("response") if isinstance(entry.get("response"), dict) else {}
            severity = _is_severity_shaped(response) if severity_scale is None else severity_scale
            acc.add_response(response, severity)
        else:
            failed.append(_failed_entry(index, entry))

    if entries and not acc.succeeded and review is None:
        raise _error_for_failed(failed)

    top_class, top_score = _top(acc.scores)
    return Normalised(
        scores=acc.scores,
        top_class=top_class,
        top_score=top_score,
        timeline=acc.timeline(),
        transcript=" ".join(acc.transcripts),
        text_matches=acc.text_matches,
        failed_entries=failed,
        model_version=", ".join(acc.model_versions)[:_MODEL_VERSION_LIMIT],
        task_id=_str(result.get("id") or result.get("task_id")),
        metadata=_metadata(result.get("metadata")),
        review=review,
    )


class _Accumulator:
    """Max scores, frames and extras gathered over every successful entry."""

    def __init__(self) -> None:
        self.succeeded = 0
        self.scores: dict[str, float] = {}
        self.frames: dict[float, dict[str, float]] = {}
        self.transcripts: list[str] = []
        self.text_matches: list[dict] = []
        self.model_versions: list[str] = []

    def add_response(self, response: dict, severity: bool) -> None:
        self.succeeded += 1
        for element in _as_list(response.get("output")):
            if not isinstance(element, dict):
                logger.warning("Hive output element is not an object: %.200r", element)
                continue
            frame = _element_scores(element, severity)
            _merge_max(self.scores, frame)
            time = _number(element.get("time", element.get("start_time")))
            if time is not None:
                _merge_max(self.frames.setdefault(time, {}), frame)
            if _str(element.get("transcript")).strip():
                self.transcripts.append(_str(element["transcript"]).strip())
        if not self.transcripts and _str(response.get("transcript")).strip():
            self.transcripts.append(_str(response["transcript"]).strip())
        self.text_matches.extend(_text_match(item) for item in _as_list(response.get("text_filters"))
                                 if isinstance(item, dict))
        version = _model_version(response)
        if version and version not in self.model_versions:
            self.model_versions.append(version)

    def timeline(self) -> list[dict]:
        # One frame at most is a still image or a text: nothing to plot.
        if len(self.frames) <= 1:
            return []
        return [{"time": time, "scores": self.frames[time]} for time in sorted(self.frames)]


def _element_scores(element: dict, severity: bool) -> dict[str, float]:
    """Max per class over an element's classes, bounding boxes and speech segments."""
    scores = _class_scores(element.get("classes"), severity)
    for group in ("bounding_poly", "classifications"):
        for item in _as_list(element.get(group)):
            if isinstance(item, dict):
                _merge_max(scores, _class_scores(item.get("classes"), severity))
    return scores


def _class_scores(classes: Any, severity: bool) -> dict[str, float]:
    """`[{class, score}]` (or `{class: score}`) to clean scores in [0, 1]."""
    if isinstance(classes, dict):
        pairs = list(classes.items())
    else:
        pairs = [(c.get("class"), c.get("score")) for c in _as_list(classes) if isinstance(c, dict)]
    scores: dict[str, float] = {}
    for name, raw in pairs:
        score = _number(raw)
        if not name or score is None:
            logger.warning("Hive class without a usable name or score: %.100r=%.100r", name, raw)
            continue
        if score < 0:
            continue  # -1: head unsupported for the detected language
        if severity:
            score /= MAX_SEVERITY
        if score > 1:
            logger.warning("Hive score above 1 for %s: %r", name, raw)
        _merge_max(scores, {str(name): min(score, 1.0)})
    return scores


def _is_severity_shaped(response: dict) -> bool:
    """Text and speech score 0-3 severities; visual models score probabilities."""
    if any(key in response for key in _TEXT_KEYS):
        return True
    elements = [e for e in _as_list(response.get("output")) if isinstance(e, dict)]
    return "transcript" in response or any("classifications" in e or "transcript" in e for e in elements)


def _succeeded(entry: dict) -> bool:
    status = entry.get("status")
    if not isinstance(status, dict):
        return False
    message = _str(status.get("message")).strip()
    if message:
        return message.upper() == "SUCCESS"
    return _str(status.get("code")).strip() == "0"  # no message: the code alone says it


def _failed_entry(index: int, entry: dict) -> dict:
    """Where Hive puts a failure's code is not documented: look in the likely places."""
    status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
    response = entry.get("response") if isinstance(entry.get("response"), dict) else {}
    code = next(
        (c for c in (status.get("error_code"), entry.get("error_code"), response.get("error_code"), status.get("code"))
         if c not in (None, "") and _str(c).strip() != "0"),
        "",
    )
    message = next(
        (m for m in (status.get("message"), entry.get("message"), entry.get("error"), response.get("message"))
         if isinstance(m, str) and m.strip()),
        "",
    )
    return {"index": index, "error_code": _str(code).strip(), "message": message.strip()}


def _error_for_failed(failed: list[dict]) -> HiveError:
    """No entry succeeded: 3xxx means the content itself is refused (give up);
    download errors and 1000 may pass on a later try."""
    codes = tuple(dict.fromkeys(e["error_code"] for e in failed if e["error_code"]))
    permanent = any(is_permanent_error_code(code) for code in codes)
    download = not permanent and any(is_download_error_code(code) for code in codes)
    unknown = [c for c in codes if not (is_permanent_error_code(c) or is_download_error_code(c)
                                        or c == GENERIC_ERROR_CODE)]
    if unknown:
        logger.warning("Hive task failed with unknown error codes %s", unknown)
    messages = list(dict.fromkeys(e["message"] for e in failed if e["message"]))
    message = "; ".join(messages) or f"Hive could not run the task (error codes: {', '.join(codes) or 'none'})"
    return HiveError(message, permanent=permanent, error_codes=codes, download_error=download)


def _raise_task_error(result: dict) -> None:
    """A result with no status entries may be a task-level error: raise it."""
    code = _number(result.get("return_code", result.get("code")))
    if code is None or code == 200:
        return
    code = int(code)
    message = _str(result.get("message") or result.get("error")).strip() or f"Hive task failed with code {code}"
    permanent = 400 <= code < 500 and code not in (408, 429)
    raise HiveError(message, permanent=permanent, status_code=code)


def _review(result: dict, entries: list) -> Any:
    if result.get("review") is not None:
        return result["review"]
    for entry in entries:
        response = entry.get("response") if isinstance(entry, dict) else None
        if isinstance(response, dict) and response.get("review") is not None:
            return response["review"]
    return None


def _model_version(response: dict) -> str:
    source = response.get("input") if isinstance(response.get("input"), dict) else {}
    for holder in (source, response):
        for key in ("model_version", "model"):
            value = holder.get(key)
            if isinstance(value, (str, int, float)) and _str(value).strip():
                return _str(value).strip()
    return ""


def _text_match(item: dict) -> dict:
    return {key: item.get(key) for key in ("value", "start_index", "end_index", "type")}


def _top(scores: dict[str, float]) -> tuple[str | None, float | None]:
    if not scores:
        return None, None
    name, score = min(scores.items(), key=lambda kv: (-kv[1], kv[0]))  # ties: by name
    return name, score


def _merge_max(into: dict[str, float], scores: dict[str, float]) -> None:
    for name, score in scores.items():
        if score > into.get(name, -1.0):
            into[name] = score


def _number(value: Any) -> float | None:
    """Hive's numbers, liberally: ints, floats or numeric strings; never bools."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _metadata(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _as_list(value: Any) -> list:
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, dict) else []


def _str(value: Any) -> str:
    return "" if value is None else str(value)
