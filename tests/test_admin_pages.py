"""What every admin page has: an icon of its own (no /favicon.ico 404 in the
log), and lists whose last column fits a 1366 px screen."""

from __future__ import annotations

from django.contrib.auth.models import User

from moderation.models import Partner, Result, Status, Submission, WebhookEndpoint
from moderation.services import webhooks
from tests.test_portal_browser import TIMEOUT_MS, browser  # noqa: F401 - the fixture


def test_every_admin_page_names_its_icon(admin_client, client, db):
    for page in (admin_client.get("/admin/"), admin_client.get("/admin/queues/"),
                 admin_client.get("/admin/moderation/submission/"), client.get("/admin/login/")):
        assert '<link rel="icon" href="data:,">' in page.content.decode()


def test_wide_lists_show_their_last_column_on_a_laptop_screen(browser, live_server, make_project):  # noqa: F811
    """As the demo's data showed them to the UI audit."""
    project = make_project("demo-visual-review", review_mode="model_manual_review", delivery="async")
    partner = Partner.objects.create(name="demo-partner")
    for n in range(3):
        submission = Submission.objects.create(
            project=project, partner=partner, source="url", url="https://cdn.example.com/a.jpg",
            external_id=f"demo-sample-reviewed-by-hive-{n}", status=Status.COMPLETED, decision="pending",
            top_class="general_suggestive", top_score=0.7812345678912345)
        Result.objects.create(submission=submission, source="callback", raw="{}", top_class="general_suggestive",
                              top_score=0.7812345678912345, hive_task_id=f"task-demo-sample-reviewed-by-hive-{n}")
    WebhookEndpoint.objects.create(partner=partner, url="http://127.0.0.1:9/hook", events=list(webhooks.EVENTS),
                                   secret=webhooks.new_secret())
    User.objects.create_superuser("ops", "ops@example.com", "ops-password")
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops-password")
    page.click("input[type=submit]")
    overflowing = {}
    for path in ("submission", "webhookendpoint", "result"):
        page.goto(f"{live_server.url}/admin/moderation/{path}/")
        wide, box = page.evaluate("() => { const r = document.querySelector('#changelist-form .results');"
                                  " return [r.scrollWidth, r.clientWidth]; }")
        if wide > box:
            overflowing[path] = f"{wide} px wide in a {box} px box"
    assert overflowing == {}
