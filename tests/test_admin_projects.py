"""Operator admin for projects: the Hive key is write-only everywhere, settings
are validated, and "test connection" calls Hive (here the simulator, served on
loopback) and says what happened."""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib.admin.models import LogEntry

from moderation.models import AuditEvent, Project, Submission

SECRET = "sim-visual-Zq8XSECRETunique7731kq"


@pytest.fixture
def hive(settings, simulator):
    settings.HIVE_API_URL = simulator
    return simulator


def form_data(project: Project, **changes) -> dict:
    data = {
        "slug": project.slug, "name": project.name, "endpoint_type": project.endpoint_type,
        "review_mode": project.review_mode, "delivery": project.delivery, "hive_api_key": "",
        "is_active": "on", "thresholds": json.dumps(project.thresholds),
        "reject_reasons": "\n".join(project.reject_reasons), "review_sla_minutes": "60",
        "callback_deadline_minutes": "30", "url_mirror": project.url_mirror, "text_limit": "1024",
        "inflight_limit": "",
    }
    data.update(changes)
    return data


def change_url(project: Project) -> str:
    return f"/admin/moderation/project/{project.pk}/change/"


def test_the_hive_key_appears_on_no_admin_page_form_message_or_log(admin_client, make_project, partner, hive,
                                                                   caplog):
    caplog.set_level(logging.DEBUG)
    project = make_project("secret-project", hive_api_key=SECRET)
    Submission.objects.create(project=project, partner=partner, source="text_data", text_data="hi")
    pages = [
        admin_client.get("/admin/moderation/project/"),
        admin_client.get(change_url(project)),
        admin_client.get(f"/admin/moderation/project/{project.pk}/history/"),
        admin_client.get(f"/admin/moderation/project/{project.pk}/delete/"),
        admin_client.get("/admin/moderation/project/add/"),
        admin_client.get("/admin/queues/"),
        admin_client.get("/admin/moderation/auditevent/"),
        admin_client.post(f"/admin/moderation/project/{project.pk}/test-connection/", follow=True),
        admin_client.post("/admin/moderation/project/",
                          {"action": "test_connection", "_selected_action": [project.pk]}, follow=True),
        # A form that fails validation is shown again: the key just typed is not in it either.
        admin_client.post(change_url(project), form_data(project, hive_api_key=SECRET, thresholds="{bad")),
    ]
    for response in pages:
        assert response.status_code == 200, response.request
        assert SECRET not in response.content.decode()
    assert "sim-…" in pages[0].content.decode()  # the hint is shown instead
    assert "key works" in pages[7].content.decode()
    assert SECRET not in caplog.text
    assert all(SECRET not in json.dumps(e.data) for e in AuditEvent.objects.all())


def test_a_key_typed_in_replaces_the_old_one_and_is_audited_by_its_hint_only(admin_client, make_project):
    project = make_project("rotate", hive_api_key="sim-visual-old-key-1")
    response = admin_client.post(change_url(project), form_data(project, hive_api_key="sim-visual-new-key-2"))
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.hive_api_key == "sim-visual-new-key-2"
    event = AuditEvent.objects.get(action="operator.hive_key_set")
    assert event.actor == "operator" and event.project == project and event.data == {"hint": "sim-…"}
    history = LogEntry.objects.get(object_id=str(project.pk))
    assert "new-key" not in history.change_message


def test_leaving_the_key_blank_keeps_it_and_logs_no_key_change(admin_client, make_project):
    project = make_project("keep", hive_api_key="sim-visual-keep-me")
    response = admin_client.post(change_url(project), form_data(project, name="Renamed"))
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.hive_api_key == "sim-visual-keep-me" and project.name == "Renamed"
    assert not AuditEvent.objects.filter(action="operator.hive_key_set").exists()
    assert "API key" not in LogEntry.objects.get(object_id=str(project.pk)).change_message


@pytest.mark.parametrize("changes, error", [
    ({"thresholds": '{"general_nsfw": {"review": 0.9, "reject": 0.5}}'}, "must not be above"),
    ({"thresholds": '{"general_nsfw": {"review": 1.5}}'}, "between 0 and 1"),
    ({"thresholds": "{not json"}, "Enter a valid JSON"),
    ({"text_limit": "0"}, "Between 1 and"),
    ({"review_sla_minutes": "0"}, "At least one minute"),
    ({"review_mode": "model_manual_review", "delivery": "sync"}, "always async"),
    ({"hive_api_key": "two words"}, "no spaces"),
])
def test_invalid_settings_are_refused_with_a_clear_error(admin_client, make_project, changes, error):
    project = make_project("strict")
    response = admin_client.post(change_url(project), form_data(project, **changes))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert Project.objects.get(pk=project.pk).thresholds == project.thresholds


def test_thresholds_reasons_sla_mirror_and_text_limit_are_saved(admin_client, make_project):
    project = make_project("tuned")
    response = admin_client.post(change_url(project), form_data(
        project, thresholds='{"yes_weapon": {"review": 0.3, "reject": 0.8}}', reject_reasons="Weapons\n\nSpam\n",
        review_sla_minutes="15", url_mirror="always", text_limit="4096"))
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.thresholds == {"yes_weapon": {"review": 0.3, "reject": 0.8}}
    assert project.reject_reasons == ["Weapons", "Spam"]
    assert (project.review_sla_minutes, project.url_mirror, project.text_limit) == (15, "always", 4096)


@pytest.mark.parametrize("endpoint_type", ["visual", "text", "speech", "ocr"])
def test_test_connection_succeeds_with_a_working_key_for_each_kind_of_endpoint(admin_client, make_project, hive,
                                                                               endpoint_type):
    project = make_project(f"ok-{endpoint_type}", endpoint_type=endpoint_type,
                           hive_api_key=f"sim-{endpoint_type}-fine")
    response = admin_client.post(f"/admin/moderation/project/{project.pk}/test-connection/", follow=True)
    assert "the key works" in response.content.decode()
    event = AuditEvent.objects.get(action="operator.connection_tested", project=project)
    assert event.data["ok"] is True and event.actor == "operator"


@pytest.mark.parametrize("key, words", [
    ("nonsense-key", "Hive refused the API key"),
    ("sim-balance-x", "insufficient balance"),
])
def test_test_connection_reports_a_refused_key_or_an_empty_balance(admin_client, make_project, hive, key, words):
    project = make_project("broken", hive_api_key=key)
    response = admin_client.post(f"/admin/moderation/project/{project.pk}/test-connection/", follow=True)
    assert words in response.content.decode()
    assert AuditEvent.objects.get(action="operator.connection_tested").data["ok"] is False


def test_test_connection_of_a_manual_review_project_creates_no_review_task(admin_client, make_project, hive):
    project = make_project("reviewed", review_mode="model_manual_review", delivery="async",
                           hive_api_key="sim-visual-review-k")
    async_calls_before = admin_client.get("/simulator/stats").json()["calls"]["async"]
    response = admin_client.post(f"/admin/moderation/project/{project.pk}/test-connection/", follow=True)
    page = response.content.decode()
    assert '<li class="success">Reviewed: The key works. A manual-review project is async only' in page
    stats = admin_client.get("/simulator/stats").json()  # the mounted simulator saw no async call
    assert stats["calls"]["async"] == async_calls_before


def test_test_connection_says_when_hive_cannot_be_reached(admin_client, make_project, settings):
    settings.HIVE_API_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    project = make_project("offline")
    response = admin_client.post(f"/admin/moderation/project/{project.pk}/test-connection/", follow=True)
    assert "could not reach Hive" in response.content.decode()


def test_test_connection_needs_a_post(admin_client, make_project):
    project = make_project("safe")
    assert admin_client.get(f"/admin/moderation/project/{project.pk}/test-connection/").status_code == 405
    assert not AuditEvent.objects.exists()


def test_a_project_with_submissions_cannot_be_deleted_and_its_rows_are_not_listed(admin_client, make_project,
                                                                                  partner):
    project = make_project("busy")
    for _ in range(3):
        Submission.objects.create(project=project, partner=partner, source="text_data", text_data="x")
    response = admin_client.get(f"/admin/moderation/project/{project.pk}/delete/")
    page = response.content.decode()
    assert "deactivate the project instead" in page
    assert str(Submission.objects.first().pk) not in page
    admin_client.post(f"/admin/moderation/project/{project.pk}/delete/", {"post": "yes"})
    assert Project.objects.filter(pk=project.pk).exists()
