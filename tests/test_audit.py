import pytest

from moderation.models import AppendOnlyError, AuditEvent
from moderation.services import audit


def test_audit_events_are_append_only(db, make_project):
    event = audit.record("project.created", project=make_project())
    event.action = "tampered"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="tampered")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().action == "project.created"
