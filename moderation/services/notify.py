"""The pipeline's notification hook: one signal per partner-visible event.

Senders are services (completion, failure, a moderator's decision); receivers
(partner webhooks) connect to `submission_event`. Sent on transaction commit,
so a receiver never sees a state that was rolled back.
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

COMPLETED = "submission.completed"
FAILED = "submission.failed"
DECIDED = "submission.decided"
EVENTS = (COMPLETED, FAILED, DECIDED)

# Receivers get `submission_id` and `event` (one of EVENTS).
submission_event = Signal()


def submission_changed(submission_id, event: str) -> None:
    assert event in EVENTS, event
    transaction.on_commit(
        lambda: submission_event.send(sender=None, submission_id=submission_id, event=event)
    )
