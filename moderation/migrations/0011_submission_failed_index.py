"""Failures, newest first: the admin's "status: failed" list and the portal's
"Failed" queue sorted every failure of their projects for one page, so both
grew with the failures of the years (1.8x and 1.9x on PostgreSQL, 3.2x and
4.0x on SQLite at 1M submissions with 1% failed). A partial index holds only
failed rows: no other write touches it.

Built CONCURRENTLY on PostgreSQL (moderation/ops/migrations.py)."""

from django.db import migrations, models
from django.db.models import Q

from moderation.ops.migrations import AddIndexLive


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("moderation", "0010_external_id_index"),
    ]

    operations = [
        AddIndexLive(model_name="submission", index=models.Index(
            fields=["created_at", "id"], condition=Q(status="failed"), name="sub_failed_idx")),
    ]
