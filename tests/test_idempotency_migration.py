"""Migration 0015 gives keyed submissions made before it the fingerprint their
Idempotency-Key record holds, so pruning those records later loses nothing."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from moderation.models import Submission

BEFORE = [("moderation", "0014_callback_receipt_retention")]
AFTER = [("moderation", "0015_idempotency_retention")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_keyed_submissions_made_before_it_get_their_records_fingerprint():
    old = migrate(BEFORE)
    try:
        partner = old.get_model("moderation", "Partner").objects.create(name="earlier")
        project = old.get_model("moderation", "Project").objects.create(
            slug="earlier", name="Earlier", endpoint_type="text", hive_api_key="sim-text-earlier")
        made = old.get_model("moderation", "Submission").objects
        keyed = made.create(project=project, partner=partner, source="text_data", text_data="hi",
                            idempotency_key="k1")
        unkeyed = made.create(project=project, partner=partner, source="text_data", text_data="hi")
        orphan = made.create(project=project, partner=partner, source="text_data", text_data="hi",
                             idempotency_key="k2")  # its record is gone already
        old.get_model("moderation", "IdempotencyRecord").objects.create(
            partner=partner, key="k1", fingerprint="a" * 64, response_status=202, response_body={})
    finally:
        migrate(AFTER)
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    fingerprints = dict(Submission.objects.values_list("pk", "idempotency_fingerprint"))
    assert fingerprints == {keyed.pk: "a" * 64, unkeyed.pk: "", orphan.pk: ""}
