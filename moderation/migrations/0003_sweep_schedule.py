"""The sweep runs every minute on whichever cluster picks it up. Created by a
migration so every deployment has it without a manual step."""

from django.db import migrations

SWEEP = "hiveportal-sweep"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SWEEP,
        defaults=dict(func="moderation.tasks.sweep", schedule_type="I", minutes=1, repeats=-1),
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SWEEP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("moderation", "0002_idempotency"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
