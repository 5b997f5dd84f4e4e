"""The portal in a real browser: Debian's Chromium driven by Playwright
against pytest-django's live server. Nothing is downloaded at test time:
Chromium comes from apt (`.ci/run` installs it), Playwright's driver from its
wheel. A missing browser fails these tests loudly instead of skipping them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.db import connections
from django.utils import timezone

from moderation.models import Decision, Project, Result, Submission
from tests.test_portal_review import make_user

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000


@pytest.fixture
def browser(live_server, monkeypatch):
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: the browser tests need Debian's package "
                    "(apt-get install -y chromium; .ci/run installs it).")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The playwright package is missing: pip install -r requirements.txt")
    # Playwright's sync API runs an event loop in this thread; the test's own
    # ORM calls are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        # ORM calls made while Playwright runs get a connection of their own
        # context; close it here, or it outlives the test database.
        connections.close_all()


@pytest.fixture
def portal(make_project, partner, media_samples):
    """A project with three waiting images (all scored high enough to blur)
    and two moderators granted it."""
    project = make_project("browser", reject_reasons=["Nudity", "Violence", "Spam"])
    moderators = [make_user(name, "moderator") for name in ("mo", "ann")]
    project.reviewers.add(*moderators)
    png = (media_samples / "sample.png").read_bytes()
    items = []
    for n in range(3):
        item = Submission.objects.create(project=project, partner=partner, source="media", media_kind="image",
                                         media_mime="image/png", status="completed", decision=Decision.PENDING,
                                         scores={"general_nsfw": 0.7}, top_class="general_nsfw", top_score=0.7,
                                         external_id=f"img-{n}")
        item.media.save("x.png", ContentFile(png))
        items.append(item)
    return {"project": project, "items": items}


def open_page(browser, live_server, username: str, viewport=(1400, 900)):
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.script_errors = []
    page.on("pageerror", lambda error: page.script_errors.append(str(error)))
    page.goto(f"{live_server.url}/portal/")
    assert "/portal/login/" in page.url, "anonymous users are sent to log in"
    page.fill("#id_username", username)
    page.fill("#id_password", username)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/portal/queue/review/"))
    return page


def blur_of(page) -> str:
    return page.eval_on_selector("[data-content]", "el => getComputedStyle(el).filter")


def test_a_moderator_reviews_with_the_keyboard_alone(browser, live_server, portal):
    first, second = portal["items"][0], portal["items"][1]
    page = open_page(browser, live_server, "mo")

    page.keyboard.press("n")  # Start reviewing
    page.wait_for_url(re.compile(rf"/portal/item/{first.pk}/"))
    page.wait_for_function("document.querySelector('[data-visual]').complete")
    assert not page.is_checked("#reveal")
    assert "blur" in blur_of(page), "media above the threshold starts blurred"
    assert page.is_visible("[data-veil]")

    page.keyboard.press("v")  # reveal
    assert page.is_checked("#reveal")
    assert "blur(0px)" in blur_of(page) or "blur" not in blur_of(page)
    assert not page.is_visible("[data-veil]")

    page.keyboard.press("?")
    assert page.is_visible("#shortcuts")
    page.keyboard.press("Escape")
    assert not page.is_visible("#shortcuts")

    page.keyboard.press("r")  # reject: choose a reason by number, Enter confirms
    assert "Pick a reason" in page.text_content("[data-mode-hint]")
    page.keyboard.press("2")
    page.keyboard.press("Enter")

    page.wait_for_url(re.compile(rf"/portal/item/{second.pk}/"))
    assert "Rejected (Violence)" in page.text_content(".messages")
    first.refresh_from_db()
    assert (first.decision, first.decision_reason, first.decided_by.username) == ("rejected", "Violence", "mo")
    second.refresh_from_db()
    assert second.claimed_by.username == "mo"
    assert page.script_errors == []


def test_two_moderators_starting_at_the_same_moment_get_different_items(browser, live_server, portal):
    pages = [open_page(browser, live_server, name) for name in ("mo", "ann")]
    # Both forms are submitted on the same timer tick, from two sessions.
    for page in pages:
        page.evaluate("setTimeout(() => document.querySelector('[data-start]').form.submit(), 400)")
    urls = []
    for page in pages:
        page.wait_for_url(re.compile(r"/portal/item/[0-9a-f-]+/"))
        urls.append(page.url.split("?")[0])
    assert urls[0] != urls[1]
    holders = dict(Submission.objects.filter(claimed_by__isnull=False).values_list("pk", "claimed_by__username"))
    assert sorted(holders.values()) == ["ann", "mo"]
    # "Also viewing" when the second moderator opens the first one's item.
    pages[1].goto(pages[0].url)
    assert "mo is reviewing this item" in pages[1].text_content("main")
    assert "Also viewing: mo" in pages[1].text_content("[data-presence-url]")


def test_a_lead_sees_the_dashboard_and_a_moderator_does_not(browser, live_server, portal):
    make_user("boss", "lead")
    lead_page = open_page(browser, live_server, "boss")
    lead_page.click("nav.tabs >> text=Dashboard")
    lead_page.wait_for_url(re.compile(r"/portal/dashboard/"))
    assert lead_page.is_visible("h1:has-text('Dashboard')")
    assert portal["project"].name in lead_page.text_content("table.list")  # its backlog row

    moderator_page = open_page(browser, live_server, "mo")
    assert moderator_page.locator("nav.tabs >> text=Dashboard").count() == 0
    response = moderator_page.goto(f"{live_server.url}/portal/dashboard/")
    assert response.status == 403
    assert "for leads" in moderator_page.text_content("main")


PHONE = (390, 844)


def test_on_a_phone_a_queue_table_scrolls_in_its_box_not_the_page(browser, live_server, portal):
    for n in range(3):  # long external ids widen the table the most
        Submission.objects.filter(pk=portal["items"][n].pk).update(external_id=f"partner-reference-{n:020d}")
    page = open_page(browser, live_server, "mo", viewport=PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    table = page.evaluate("(t => ({table: t.offsetWidth, box: t.parentElement.clientWidth}))"
                          "(document.querySelector('table.list'))")
    assert table["table"] > table["box"], "the table scrolls inside its own box"


def test_on_a_phone_approve_is_above_the_fold_under_a_landscape_image(browser, live_server, portal):
    item = portal["items"][0]
    # A long project name and a long wait: badges that wrap to a second line.
    Project.objects.filter(pk=portal["project"].pk).update(slug="browser-visual-sync")
    Submission.objects.filter(pk=item.pk).update(created_at=timezone.now() - timedelta(minutes=75))
    page = open_page(browser, live_server, "mo", viewport=PHONE)
    page.goto(f"{live_server.url}/portal/item/{item.pk}/")
    page.wait_for_function("document.querySelector('[data-visual]').complete")
    media = page.locator("[data-media]").bounding_box()
    approve = page.locator("[data-action=approve]").bounding_box()
    assert media["height"] <= PHONE[1] * 0.45 + 1, media
    assert approve["y"] + approve["height"] <= PHONE[1], "Approve is on the first screen"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    assert page.script_errors == []


def test_the_grid_asks_for_one_of_its_own_reasons(browser, live_server, portal):
    page = open_page(browser, live_server, "mo")
    page.goto(f"{live_server.url}/portal/grid/")
    page.check("[data-tile-check] >> nth=0")
    page.click("[data-action=reject]")
    assert page.text_content("[data-count]") == "Pick a reason (1–3) first."


def test_leaving_the_grid_gives_its_images_back_at_once(browser, live_server, portal):
    page = open_page(browser, live_server, "mo")
    page.goto(f"{live_server.url}/portal/grid/")
    items = Submission.objects.filter(pk__in=[i.pk for i in portal["items"]])
    assert {i.claimed_by.username for i in items} == {"mo"}  # the grid holds what it shows
    page.goto(f"{live_server.url}/portal/queue/review/")  # away, not through Release all
    deadline = timezone.now() + timedelta(seconds=10)
    while items.filter(claimed_by__isnull=False).exists() and timezone.now() < deadline:
        page.wait_for_timeout(100)
    assert not items.filter(claimed_by__isnull=False).exists(), "still held until the lease runs out"
    page.go_back()  # the grid again (from the browser's memory or not): its images are held again
    page.wait_for_selector("[data-tile-check]")
    deadline = timezone.now() + timedelta(seconds=10)
    while items.filter(claimed_by__isnull=True).exists() and timezone.now() < deadline:
        page.wait_for_timeout(100)
    assert {i.claimed_by.username for i in items} == {"mo"}


def test_deciding_in_the_grid_is_not_undone_by_leaving_it(browser, live_server, portal):
    page = open_page(browser, live_server, "mo")
    page.goto(f"{live_server.url}/portal/grid/")
    page.check("[data-tile-check] >> nth=0")
    page.click("[data-action=approve]")
    page.wait_for_load_state()
    assert Submission.objects.filter(decision=Decision.APPROVED).count() == 1
    # The grid that reloads holds the other two; its decision's page left without a beacon.
    assert Submission.objects.filter(decision=Decision.PENDING, claimed_by__username="mo").count() == 2


def test_a_speech_transcript_starts_blurred_and_v_reveals_it(browser, live_server, portal, media_samples):
    speech = Submission.objects.create(
        project=portal["project"], partner=portal["items"][0].partner, source="media", media_kind="audio",
        media_mime="audio/mpeg", status="completed", decision=Decision.PENDING, scores={"violence": 0.8},
        top_class="violence", top_score=0.8)
    speech.media.save("a.mp3", ContentFile((media_samples / "sample.mp3").read_bytes()))
    Result.objects.create(submission=speech, source="sync", fingerprint="f", raw="{}", scores={"violence": 0.8},
                          transcript="I will find you")
    page = open_page(browser, live_server, "mo")
    page.goto(f"{live_server.url}/portal/item/{speech.pk}/")

    def transcript_filter() -> str:
        return page.eval_on_selector("text=I will find you",
                                     "el => getComputedStyle(el.closest('[data-content]') || el).filter")

    assert "blur" in transcript_filter() and page.is_visible("[data-veil]")
    page.keyboard.press("v")
    assert "blur" not in transcript_filter() or "blur(0px)" in transcript_filter()
    assert page.script_errors == []
