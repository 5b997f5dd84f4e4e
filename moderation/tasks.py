"""django-q2 task entry points: thin, take ids, and are safe to run twice
(each claims its row by conditional UPDATE)."""

from __future__ import annotations

from moderation.services import callbacks, dispatch, sweep as sweeping
from moderation.services import retention, webhooks


def dispatch_submission(submission_id: str) -> None:
    dispatch.dispatch_submission(submission_id)


def pump_project(project_id: int) -> None:
    dispatch.pump(project_id)


def process_callback(receipt_id: int) -> None:
    callbacks.process(receipt_id)


def sweep() -> dict:
    report = sweeping.sweep()
    return {"requeued": len(report.requeued), "overdue": len(report.overdue), "pumps": report.pumps,
            "callbacks_requeued": report.callbacks_requeued}


# --- Partner webhooks (services/webhooks.py) ---------------------------------------


def fan_out_webhooks(submission_id: str, event: str, occurred_at: str) -> int:
    return webhooks.fan_out(submission_id, event, occurred_at)


def deliver_webhook(message_id: str, manual: bool = False) -> None:
    webhooks.deliver(message_id, manual=manual)


def drain_webhooks() -> int:
    return webhooks.scheduled_drain()


def prune_webhooks() -> int:
    return retention.prune_webhooks()


def prune_callback_receipts() -> int:
    return retention.prune_callback_receipts()


def prune_idempotency_records() -> int:
    return retention.prune_idempotency_records()
