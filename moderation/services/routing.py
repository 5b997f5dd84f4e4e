"""Threshold routing: class scores → auto-approve, auto-reject or human review."""

from __future__ import annotations

from dataclasses import dataclass, field

from moderation.models import Decision


@dataclass(frozen=True)
class Route:
    decision: str
    # The classes that crossed a threshold, with their score and the bound.
    triggered: dict[str, dict] = field(default_factory=dict)


def route(scores: dict[str, float], thresholds: dict[str, dict]) -> Route:
    """At or above `reject` for any class → rejected; else at or above `review`
    for any class → pending (human review); else approved. Classes without a
    threshold never route: the project decides which classes matter."""
    rejected: dict[str, dict] = {}
    review: dict[str, dict] = {}
    for cls, bounds in thresholds.items():
        score = scores.get(cls)
        if score is None:
            continue
        if "reject" in bounds and score >= bounds["reject"]:
            rejected[cls] = {"score": score, "reject": bounds["reject"]}
        elif "review" in bounds and score >= bounds["review"]:
            review[cls] = {"score": score, "review": bounds["review"]}
    if rejected:
        return Route(Decision.REJECTED, rejected)
    if review:
        return Route(Decision.PENDING, review)
    return Route(Decision.APPROVED)
