"""Stored Idempotency-Key answers are pruned every hour (services/retention.py).
Created by a migration so every deployment has it without a manual step, like the
callback receipts' (0014)."""

from django.db import migrations

PRUNE = "hiveportal-idempotency-prune"


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

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
