"""Partner webhooks.

- An event's body is stored once (WebhookEvent), not once per endpoint, and its
  per-endpoint messages are created by the drain as it has room (`fanned_out_at`):
  a burst of events to many endpoints costs the queue one small row per event.
- The drain, which also sends what is due (retries, and anything a dead worker
  left), runs every minute. The schedule is created here so every deployment has
  it without a manual step, like the sweep (0003).
"""

import django.db.models.deletion
from django.db import migrations, models

DRAIN = "hiveportal-webhooks-drain"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=DRAIN,
        defaults=dict(func="moderation.tasks.drain_webhooks", schedule_type="I", minutes=1, repeats=-1),
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=DRAIN).delete()


def forget_messages(apps, schema_editor):
    # Nothing ever created messages before this migration (the sender was a
    # placeholder); clearing makes the new required `event` column safe.
    apps.get_model("moderation", "WebhookMessage").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("moderation", "0005_portal_and_webhooks"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.RunPython(forget_messages, migrations.RunPython.noop),
        migrations.CreateModel(
            name="WebhookEvent",
            fields=[
                ("id", models.CharField(editable=False, max_length=40, primary_key=True, serialize=False)),
                ("event_type", models.CharField(max_length=40)),
                ("body", models.TextField()),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("fanned_out_at", models.DateTimeField(blank=True, null=True)),
                ("submission", models.ForeignKey(blank=True, null=True,
                                                 on_delete=django.db.models.deletion.SET_NULL,
                                                 related_name="webhook_events", to="moderation.submission")),
            ],
            options={
                "ordering": ["-created_at"],
                "indexes": [models.Index(fields=["fanned_out_at", "created_at"], name="webhook_event_fanout_idx")],
            },
        ),
        migrations.RemoveField(model_name="webhookmessage", name="body"),
        migrations.AddField(
            model_name="webhookmessage",
            name="event",
            field=models.ForeignKey(default=None, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="messages", to="moderation.webhookevent"),
            preserve_default=False,
        ),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
