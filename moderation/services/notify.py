"""The pipeline's notification hook: one event per partner-visible change.

Senders are services (completion, failure, a moderator's decision), calling
`submission_changed` inside the transaction that made the change. Receivers
connect to one of two signals:
- `submission_event_in_transaction`: sent there and then, so what a receiver
  writes (the partner webhook outbox) commits or rolls back with the change. Such
  a receiver only writes rows; anything outside the database waits for the commit.
- `submission_event`: sent on commit (metrics, waking the webhook drain), so a
  receiver never sees a state that was rolled back.
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

COMPLETED = "submission.completed"
FAILED = "submission.failed"
DECIDED = "submission.decided"
EVENTS = (COMPLETED, FAILED, DECIDED)

# Both send `submission_id`, `event` (one of EVENTS) and `occurred_at` (an aware datetime).
submission_event_in_transaction = Signal()
submission_event = Signal()


def submission_changed(submission_id, event: str) -> None:
    assert event in EVENTS, event
    occurred_at = timezone.now()
    submission_event_in_transaction.send(sender=None, submission_id=submission_id, event=event,
                                         occurred_at=occurred_at)
    transaction.on_commit(lambda: submission_event.send(
        sender=None, submission_id=submission_id, event=event, occurred_at=occurred_at))
