"""Stored Idempotency-Key answers are pruned every hour (services/retention.py),
by a schedule created here so every deployment has it without a manual step, like
the callback receipts' (0014). The submission keeps the request's fingerprint
with its key, so a repeat after the pruning is judged exactly; existing keyed
submissions take theirs from the records, none of which was pruned before this."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

PRUNE = "hiveportal-idempotency-prune"


def copy_fingerprints(apps, schema_editor):
    Submission = apps.get_model("moderation", "Submission")
    IdempotencyRecord = apps.get_model("moderation", "IdempotencyRecord")
    asked = IdempotencyRecord.objects.filter(
        partner=OuterRef("partner"), key=OuterRef("idempotency_key")).values("fingerprint")[:1]
    Submission.objects.filter(idempotency_key__isnull=False).update(
        idempotency_fingerprint=Coalesce(Subquery(asked), Value("")))


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=PRUNE,
        defaults=dict(func="moderation.tasks.prune_idempotency_records", schedule_type="H", repeats=-1),
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=PRUNE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("moderation", "0014_callback_receipt_retention"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.AddField(
            model_name="submission",
            name="idempotency_fingerprint",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(copy_fingerprints, migrations.RunPython.noop),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
