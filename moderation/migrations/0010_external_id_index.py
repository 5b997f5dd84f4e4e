"""external_id on its own: the portal's and the admin's search by external id run
across partners, and PostgreSQL read the whole (partner, external_id) index to
answer them (about 30 ms at 1M submissions, growing). The partner API's lookup
(its partner and an external id) is served as well, so the old index goes.

Built and dropped CONCURRENTLY on PostgreSQL: writes to submissions go on while
the index builds (moderation/ops/migrations.py)."""

from django.db import migrations, models

from moderation.ops.migrations import AddIndexLive, RemoveIndexLive


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("moderation", "0009_webhook_retention"),
    ]

    operations = [
        AddIndexLive(model_name="submission", index=models.Index(fields=["external_id"], name="sub_ext_id_idx")),
        RemoveIndexLive(model_name="submission", name="sub_external_id_idx"),
    ]
