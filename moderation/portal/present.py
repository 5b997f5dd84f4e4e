"""What the review screen draws, computed in Python so templates stay dumb:
score bars against thresholds, highlighted text, the video/audio score strip."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

MAX_SCORE_ROWS = 12


@dataclass(frozen=True)
class ScoreRow:
    cls: str
    score: float
    review: float | None
    reject: float | None

    @property
    def state(self) -> str:
        if self.reject is not None and self.score >= self.reject:
            return "reject"
        if self.review is not None and self.score >= self.review:
            return "review"
        return "ok"

    @property
    def percent(self) -> float:
        return round(max(0.0, min(self.score, 1.0)) * 100, 1)


def score_rows(scores: dict | None, thresholds: dict | None) -> list[ScoreRow]:
    """Classes the project routes on first (worst first), then the highest others.
    None until Hive has scored the item: a row of zeros would read as clean."""
    if not scores:
        return []
    thresholds = thresholds or {}
    routed = [ScoreRow(c, float(scores.get(c, 0.0)), b.get("review"), b.get("reject"))
              for c, b in thresholds.items()]
    others = [ScoreRow(c, float(s), None, None) for c, s in scores.items() if c not in thresholds]
    routed.sort(key=lambda r: (-r.score, r.cls))
    others.sort(key=lambda r: (-r.score, r.cls))
    return (routed + others)[:max(MAX_SCORE_ROWS, len(routed))]


@dataclass(frozen=True)
class Segment:
    text: str
    match: dict | None = None


def highlight(text: str, matches: list[dict] | None) -> list[Segment]:
    """Split `text` around Hive's filter matches. Hive's indices are trusted
    only when they point at the matched value; otherwise the value is looked
    up, so a bad index never highlights the wrong words."""
    spans: list[tuple[int, int, dict]] = []
    lowered = text.lower()
    for match in matches or []:
        span = _span(text, lowered, match)
        if span and not any(s < span[1] and span[0] < e for s, e, _ in spans):
            spans.append((*span, match))
    spans.sort(key=lambda s: s[0])
    segments, pos = [], 0
    for start, end, match in spans:
        if start > pos:
            segments.append(Segment(text[pos:start]))
        segments.append(Segment(text[start:end], match))
        pos = end
    if pos < len(text) or not segments:
        segments.append(Segment(text[pos:]))
    return segments


def _span(text: str, lowered: str, match: dict) -> tuple[int, int] | None:
    value = str(match.get("value") or "")
    start, end = match.get("start_index"), match.get("end_index")
    if isinstance(start, int) and isinstance(end, int) and 0 <= start < len(text):
        for stop in (end, end + 1):  # Hive's end index may be inclusive
            if 0 < stop <= len(text) and (not value or text[start:stop].lower() == value.lower()):
                return start, stop
    if value:
        found = lowered.find(value.lower())
        if found >= 0:
            return found, found + len(value)
    return None


@dataclass(frozen=True)
class Strip:
    svg: SafeString
    peak_time: float
    peak_class: str
    peak_score: float
    duration: float


STRIP_W, STRIP_H = 1000, 64


def score_strip(timeline: list[dict] | None, thresholds: dict | None) -> Strip | None:
    """Per-frame worst score over time as an SVG bar strip; each bar seeks the
    player to its frame (a plain `?t=` link without JavaScript)."""
    frames = [f for f in timeline or [] if isinstance(f, dict) and isinstance(f.get("scores"), dict)]
    if len(frames) < 2:
        return None
    thresholds = thresholds or {}
    times = [float(f.get("time") or 0) for f in frames]
    step = min((b - a for a, b in zip(times, times[1:]) if b > a), default=1.0)
    duration = max(times[-1] + step, 0.001)
    bars, peak = [], (-1.0, 0.0, "")
    for time, frame in zip(times, frames):
        cls, score = _worst(frame["scores"])
        if score > peak[0]:
            peak = (score, time, cls)
        state = ScoreRow(cls, score, *_bounds(thresholds, cls)).state
        x = time / duration * STRIP_W
        width = max(step / duration * STRIP_W - 1, 1)
        height = max(score * (STRIP_H - 4), 1)
        bars.append(
            f'<a href="?t={time:g}" data-time="{time:g}"><rect class="bar {state}" x="{x:.1f}" '
            f'y="{STRIP_H - height:.1f}" width="{width:.1f}" height="{height:.1f}">'
            f'<title>{time:g}s · {escape(cls)} {score:.2f}</title></rect></a>'
        )
    lines = _threshold_lines(thresholds)
    peak_x = peak[1] / duration * STRIP_W
    svg = (
        f'<svg class="strip" viewBox="0 0 {STRIP_W} {STRIP_H}" preserveAspectRatio="none" role="img" '
        f'aria-label="Scores over time; peak {escape(peak[2])} {peak[0]:.2f} at {peak[1]:g} seconds">'
        f'{"".join(bars)}{lines}'
        f'<line class="peak" x1="{peak_x:.1f}" x2="{peak_x:.1f}" y1="0" y2="{STRIP_H}"/>'
        f'<line class="cursor" x1="0" x2="0" y1="0" y2="{STRIP_H}"/></svg>'
    )
    return Strip(mark_safe(svg), peak[1], peak[2], peak[0], duration)


def _worst(scores: dict) -> tuple[str, float]:
    if not scores:
        return "", 0.0
    cls = max(scores, key=lambda c: (scores[c], c))
    return cls, float(scores[cls])


def _bounds(thresholds: dict, cls: str) -> tuple[float | None, float | None]:
    bounds = thresholds.get(cls) or {}
    return bounds.get("review"), bounds.get("reject")


def _threshold_lines(thresholds: dict) -> str:
    out = []
    for name in ("review", "reject"):
        values = [b[name] for b in thresholds.values() if isinstance(b, dict) and name in b]
        if values:
            y = STRIP_H - min(values) * (STRIP_H - 4)
            out.append(f'<line class="threshold {name}" x1="0" x2="{STRIP_W}" y1="{y:.1f}" y2="{y:.1f}"/>')
    return "".join(out)


def hive_review(results) -> dict | None:
    """Hive's manual-review verdict from the latest result that carries one."""
    for result in reversed(list(results)):
        if result.review is not None:
            review = result.review if isinstance(result.review, dict) else {"verdict": result.review}
            return {**review, "received_ago": age(result.received_at)}
    return None


def event_summary(data: dict | None) -> str:
    """A short line for the history list: the fields a person reads first."""
    if not data:
        return ""
    keys = ("decision", "previous", "reason", "note", "to", "top_class", "top_score", "triggered", "error",
            "task_id")
    parts = []
    for key in keys:
        value = data.get(key)
        if value in (None, "", [], {}):
            continue
        if isinstance(value, float):
            value = f"{value:.2f}"
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        elif key == "triggered" and isinstance(value, dict):
            value = _triggers(value)
        parts.append(f"{key.replace('_', ' ')}: {value}")
    return " · ".join(parts)[:400]


def _triggers(triggered: dict) -> str:
    """Routing's {class: {"score": s, "review" or "reject": bound}} as
    "violence 0.67 ≥ review 0.60" (a moderator's decision stores a plain list)."""
    parts = []
    for cls, hit in triggered.items():
        hit = hit if isinstance(hit, dict) else {}
        bound = next((name for name in ("reject", "review") if name in hit), None)
        if isinstance(hit.get("score"), (int, float)) and bound and isinstance(hit[bound], (int, float)):
            parts.append(f"{cls} {hit['score']:.2f} ≥ {bound} {hit[bound]:.2f}")
        else:
            parts.append(str(cls))
    return ", ".join(parts)


def age(when: datetime, now: datetime | None = None) -> str:
    """How long ago, for "waiting …" and "… ago": Django's timesince says
    "0 minutes" under a minute."""
    if (now or timezone.now()) - when < timedelta(minutes=1):
        return "less than a minute"
    return timesince(when, now)
