"""django-q2 task entry points: thin, take ids, and are safe to run twice
(each claims its row by conditional UPDATE)."""

from __future__ import annotations

from moderation.services import callbacks, dispatch, sweep as sweeping


def dispatch_submission(submission_id: str) -> None:
    dispatch.dispatch_submission(submission_id)


def pump_project(project_id: int) -> None:
    dispatch.pump(project_id)


def process_callback(receipt_id: int) -> None:
    callbacks.process(receipt_id)


def sweep() -> dict:
    report = sweeping.sweep()
    return {"requeued": len(report.requeued), "overdue": len(report.overdue), "pumps": report.pumps}
