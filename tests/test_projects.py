import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from moderation.hive.rules import ENDPOINT_RULES, rule_for
from moderation.models import Delivery, Project, ReviewMode


def test_endpoint_rules_table_matches_the_contract():
    visual_like = {"visual", "ocr", "logo", "scene", "face"}
    for endpoint_type in visual_like:
        assert ENDPOINT_RULES[endpoint_type].fields == ("media", "url")
        assert ENDPOINT_RULES[endpoint_type].media == ("image", "gif", "video")
    assert ENDPOINT_RULES["speech"].fields == ("media", "url")
    assert ENDPOINT_RULES["speech"].media == ("audio", "video")
    assert ENDPOINT_RULES["text"].fields == ("text_data",)
    assert ENDPOINT_RULES["text"].media == ("text",)
    assert set(ENDPOINT_RULES) == visual_like | {"speech", "text"}


def test_an_unknown_endpoint_type_is_an_error():
    with pytest.raises(ValueError, match="unknown Hive endpoint type"):
        rule_for("telepathy")


def test_a_manual_review_project_cannot_be_sync(db):
    project = Project(
        slug="bad", name="Bad", endpoint_type="visual",
        review_mode=ReviewMode.MODEL_MANUAL_REVIEW, delivery=Delivery.SYNC,
    )
    with pytest.raises(ValidationError) as caught:
        project.full_clean()
    assert "delivery" in caught.value.message_dict
    assert "Model Only" in caught.value.message_dict["delivery"][0]


def test_the_database_refuses_a_sync_manual_review_project_too(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        Project.objects.create(
            slug="bad", name="Bad", endpoint_type="visual",
            review_mode=ReviewMode.MODEL_MANUAL_REVIEW, delivery=Delivery.SYNC,
        )


@pytest.mark.parametrize("delivery", [Delivery.SYNC, Delivery.ASYNC])
def test_model_only_projects_may_be_sync_or_async(db, delivery):
    project = Project(slug="ok", name="Ok", endpoint_type="text", review_mode=ReviewMode.MODEL_ONLY,
                      delivery=delivery)
    project.full_clean()
    project.save()


@pytest.mark.parametrize(
    "thresholds",
    [
        {"nsfw": {"review": 0.9, "reject": 0.5}},
        {"nsfw": {"review": 1.5}},
        {"nsfw": {"review": "high"}},
        {"nsfw": {"block": 0.5}},
        ["nsfw"],
    ],
)
def test_invalid_thresholds_are_refused(db, thresholds):
    project = Project(slug="t", name="T", endpoint_type="visual", thresholds=thresholds)
    with pytest.raises(ValidationError) as caught:
        project.full_clean()
    assert "thresholds" in caught.value.message_dict


def test_the_hive_key_hint_never_shows_the_whole_key(make_project):
    project = make_project(hive_api_key="abcd1234secretsecret")
    assert project.hive_key_hint == "abcd…"
    assert "secret" not in project.hive_key_hint
