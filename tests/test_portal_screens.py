"""The portal's screens through the Django test client: what a moderator sees
and what their plain-HTML forms do."""

from __future__ import annotations

import re

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from moderation.models import AuditEvent, Decision, ModeratorPreference, Result, ReviewMode, Status
from moderation.services import review
from tests.test_portal_review import (  # noqa: F401  (fixtures)
    _clean_cache,
    lead,
    make_item,
    make_user,
    moderator,
    other_moderator,
    project,
)


@pytest.fixture
def client_for(db):
    def login(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return login


@pytest.fixture
def mo(client_for, moderator):  # noqa: F811
    return client_for(moderator)


def image_item(make_item, media_samples, minutes_ago=10, **fields):  # noqa: F811
    item = make_item(minutes_ago, source="media", media_kind="image", media_mime="image/png", text_data="",
                     **fields)
    item.media.save("x.png", ContentFile((media_samples / "sample.png").read_bytes()))
    return item


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_start_reviewing_opens_the_oldest_item_and_submit_and_next_moves_on(mo, make_item, moderator):  # noqa: F811
    first, second = make_item(30), make_item(20)
    opened = mo.post("/portal/start/")
    assert opened.status_code == 302 and opened["Location"] == f"/portal/item/{first.pk}/?queue=review"
    page = mo.get(opened["Location"])
    seen = re.search(r'name="seen" value="([^"]+)"', page.content.decode()).group(1)
    decided = mo.post(f"/portal/item/{first.pk}/decide/",
                      {"action": "reject", "reason": "Nudity", "seen": seen, "next": "1", "queue": "review"},
                      follow=True)
    assert decided.redirect_chain[-1][0] == f"/portal/item/{second.pk}/?queue=review"
    assert any("Rejected (Nudity)" in m for m in messages_of(decided))
    first.refresh_from_db()
    assert (first.decision, first.decision_reason, first.decided_by) == ("rejected", "Nudity", moderator)


def test_the_last_decision_leads_back_to_an_empty_queue(mo, make_item):  # noqa: F811
    item = make_item(10)
    response = mo.post(f"/portal/item/{item.pk}/decide/",
                       {"action": "approve", "seen": review.seen_token(item), "next": "1", "queue": "review"},
                       follow=True)
    assert response.redirect_chain[-1][0] == "/portal/queue/review/"
    assert any("queue is empty" in m for m in messages_of(response))


def test_a_decision_on_a_stale_page_is_refused_with_a_message(client_for, mo, make_item, other_moderator):  # noqa
    item = make_item(10)
    seen = review.seen_token(item)
    client_for(other_moderator).post(f"/portal/item/{item.pk}/decide/", {"action": "approve", "seen": seen})
    response = mo.post(f"/portal/item/{item.pk}/decide/",
                       {"action": "reject", "reason": "Nudity", "seen": seen, "next": "1"}, follow=True)
    assert any("ann already decided" in m for m in messages_of(response))
    item.refresh_from_db()
    assert item.decision == Decision.APPROVED
    assert AuditEvent.objects.filter(action="decision.moderator").count() == 1


def test_rejecting_without_a_reason_keeps_the_note_and_says_what_is_missing(mo, make_item):  # noqa: F811
    item = make_item(10)
    response = mo.post(f"/portal/item/{item.pk}/decide/",
                       {"action": "reject", "seen": review.seen_token(item), "note": "my careful note"})
    assert response.status_code == 400
    assert "Choose a reason to reject." in response.content.decode()
    assert "my careful note" in response.content.decode()
    item.refresh_from_db()
    assert item.decision == Decision.PENDING


def test_media_above_the_moderators_threshold_starts_blurred(mo, make_item, media_samples, moderator):  # noqa
    hot = image_item(make_item, media_samples, top_score=0.8)
    mild = image_item(make_item, media_samples, top_score=0.1)
    assert "checked" in _reveal_input(mo.get(f"/portal/item/{mild.pk}/"))
    assert "checked" not in _reveal_input(mo.get(f"/portal/item/{hot.pk}/"))
    ModeratorPreference.objects.filter(user=moderator).update(blur_enabled=False)
    assert "checked" in _reveal_input(mo.get(f"/portal/item/{hot.pk}/"))


def _reveal_input(response) -> str:
    return re.search(r'<input type="checkbox" id="reveal"[^>]*>', response.content.decode()).group(0)


def test_preferences_set_grayscale_and_muted_playback(mo, make_item, moderator, media_samples):  # noqa: F811
    response = mo.post("/portal/preferences/", {"blur_enabled": "on", "blur_threshold": "0.5",
                                                "grayscale": "on"})
    assert response.status_code == 302
    prefs = ModeratorPreference.objects.get(user=moderator)
    assert (prefs.blur_enabled, prefs.blur_threshold, prefs.grayscale, prefs.video_muted) == (True, 0.5, True, False)
    item = image_item(make_item, media_samples)
    page = mo.get(f"/portal/item/{item.pk}/").content.decode()
    assert re.search(r'<input type="checkbox" id="gray"[^>]*checked', page)
    bad = mo.post("/portal/preferences/", {"blur_threshold": "3"})
    assert bad.status_code == 400


def test_text_is_shown_escaped_with_the_filter_matches_highlighted(mo, make_item):  # noqa: F811
    text = "<b>hi</b> you absolute idiot, bye"
    item = make_item(5, text_data=text)
    Result.objects.create(submission=item, source="sync", fingerprint="f", raw="{}", scores={},
                          text_matches=[{"value": "idiot", "start_index": 24, "end_index": 29, "type": "bullying"}])
    page = mo.get(f"/portal/item/{item.pk}/").content.decode()
    assert '<mark class="m-bullying" title="bullying">idiot</mark>' in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi</b>" not in page


def test_video_gets_a_score_strip_and_a_jump_to_its_peak(mo, make_item, media_samples):  # noqa: F811
    item = make_item(5, source="media", media_kind="video", media_mime="video/mp4", text_data="")
    item.media.save("v.mp4", ContentFile((media_samples / "sample.mp4").read_bytes()))
    timeline = [{"time": t, "scores": {"general_nsfw": s}} for t, s in ((0, 0.1), (1, 0.95), (2, 0.4))]
    Result.objects.create(submission=item, source="sync", fingerprint="f", raw="{}", scores={"general_nsfw": 0.95},
                          timeline=timeline)
    page = mo.get(f"/portal/item/{item.pk}/").content.decode()
    assert "<video" in page and " muted" in page  # muted by default
    assert 'data-peak="1"' in page
    assert page.count('class="bar ') == 3 and 'class="bar reject"' in page
    jumped = mo.get(f"/portal/item/{item.pk}/?t=1").content.decode()
    assert f'/portal/item/{item.pk}/media/#t=1.0"' in jumped


def test_audio_comes_with_its_transcript(mo, make_item, media_samples):  # noqa: F811
    item = make_item(5, source="media", media_kind="audio", media_mime="audio/mpeg", text_data="")
    item.media.save("a.mp3", ContentFile((media_samples / "sample.mp3").read_bytes()))
    Result.objects.create(submission=item, source="sync", fingerprint="f", raw="{}", scores={},
                          transcript="I will find you")
    page = mo.get(f"/portal/item/{item.pk}/").content.decode()
    assert "<audio" in page and "I will find you" in page


def test_hives_manual_review_is_shown_beside_the_model(mo, make_item, project):  # noqa: F811
    project.review_mode, project.delivery = ReviewMode.MODEL_MANUAL_REVIEW, "async"
    project.save()
    item = make_item(5)
    Result.objects.create(submission=item, source="callback", fingerprint="a", raw="{}", scores={"general_nsfw": 0.6})
    Result.objects.create(submission=item, source="callback", fingerprint="b", raw="{}", scores={"general_nsfw": 0.6},
                          review={"decision": "reject", "reason": "violates content policy"})
    page = mo.get(f"/portal/item/{item.pk}/").content.decode()
    assert "Hive manual review" in page and "violates content policy" in page
    assert 'class="hive-verdict v-reject"' in page


def test_scores_are_drawn_against_the_projects_thresholds(mo, make_item):  # noqa: F811
    item = make_item(5, scores={"general_nsfw": 0.95, "yes_violence": 0.6, "other": 0.2})
    page = mo.get(f"/portal/item/{item.pk}/").content.decode()
    assert 'score-row s-reject' in page and 'score-row s-review' in page
    assert 'class="tick review" style="left: 50%"' in page and 'class="tick reject" style="left: 90%"' in page


def test_the_review_screen_shows_the_items_history_and_who_else_is_viewing(client_for, mo, make_item,
                                                                          other_moderator):  # noqa: F811
    item = make_item(5)
    review.decide(other_moderator, item, "escalate", seen=review.seen_token(item), note="need a second look")
    client_for(other_moderator).get(f"/portal/item/{item.pk}/")
    page = mo.get(f"/portal/item/{item.pk}/").content.decode()
    assert "decision.moderator" in page and "need a second look" in page
    assert "Also viewing: ann" in page
    beat = mo.post(f"/portal/item/{item.pk}/presence/").json()
    assert beat["others"] == ["ann"] and beat["seen"] == review.seen_token(item.__class__.objects.get(pk=item.pk))


def test_a_moderator_cannot_decide_an_escalation_on_screen_but_a_lead_can(client_for, mo, make_item, lead):  # noqa
    item = make_item(5, decision=Decision.ESCALATED)
    assert "data-decide" not in mo.get(f"/portal/item/{item.pk}/").content.decode()
    assert "data-decide" in client_for(lead).get(f"/portal/item/{item.pk}/?queue=escalated").content.decode()
    refused = mo.post(f"/portal/item/{item.pk}/decide/", {"action": "approve", "seen": review.seen_token(item)})
    assert refused.status_code == 403


def test_the_grid_holds_images_and_decides_the_selection_at_once(mo, make_item, media_samples, moderator):  # noqa
    images = [image_item(make_item, media_samples, minutes_ago=30 - n) for n in range(3)]
    make_item(40)  # text: not in the grid
    page = mo.get("/portal/grid/").content.decode()
    assert page.count('name="ids"') == 3
    tokens = dict(re.findall(r'name="seen-([0-9a-f-]+)" value="([^"]+)"', page))
    picked = [str(images[0].pk), str(images[2].pk)]
    response = mo.post("/portal/grid/", {"ids": picked, "action": "reject", "reason": "Violence",
                                         **{f"seen-{pk}": tokens[pk] for pk in picked}}, follow=True)
    assert any("Rejected 2" in m for m in messages_of(response))
    for image in images:
        image.refresh_from_db()
    assert [i.decision for i in images] == ["rejected", "pending", "rejected"]
    assert images[1].claimed_by == moderator  # still held for this moderator's next grid


def test_leaving_the_grid_gives_its_images_back(mo, make_item, media_samples, client_for, other_moderator):  # noqa
    images = [image_item(make_item, media_samples, minutes_ago=30 - n) for n in range(2)]
    page = mo.get("/portal/grid/").content.decode()
    assert page.count('name="shown"') == 2
    assert client_for(other_moderator).get("/portal/grid/").content.decode().count('name="ids"') == 0
    mo.post("/portal/grid/", {"action": "release", "shown": [str(i.pk) for i in images]})
    assert client_for(other_moderator).get("/portal/grid/").content.decode().count('name="ids"') == 2


def test_the_grid_refuses_a_reject_without_a_reason(mo, make_item, media_samples):  # noqa: F811
    image = image_item(make_item, media_samples)
    response = mo.post("/portal/grid/", {"ids": [str(image.pk)], "action": "reject",
                                         f"seen-{image.pk}": review.seen_token(image)}, follow=True)
    assert any("reason" in m for m in messages_of(response))
    image.refresh_from_db()
    assert image.decision == Decision.PENDING


def test_the_dashboard_draws_its_charts_server_side_with_no_outside_assets(client_for, make_item, lead,
                                                                          moderator):  # noqa: F811
    item = make_item(30)
    review.decide(moderator, item, "approve", seen=review.seen_token(item))
    page = client_for(lead).get("/portal/dashboard/").content.decode()
    assert "Backlog" in page and page.count("<svg") >= 2
    assert not re.search(r'(src|href)="(https?:)?//', page), "no CDN or outside asset"


def test_queue_rows_show_age_coloured_against_the_sla_and_who_holds_an_item(mo, make_item, client_for,
                                                                           other_moderator):  # noqa: F811
    late, fresh = make_item(90), make_item(5)
    review.claim(other_moderator, fresh)
    page = mo.get("/portal/queue/review/").content.decode()
    assert '<tr class="sla-late">' in page and '<tr class="sla-ok">' in page
    assert "● ann" in page


def test_search_by_external_id_opens_the_item_directly(mo, make_item):  # noqa: F811
    item = make_item(5, external_id="partner-42", status=Status.FAILED, decision=None)
    response = mo.get("/portal/search/?q=partner-42")
    assert response.status_code == 302 and response["Location"] == f"/portal/item/{item.pk}/?queue=search"


def test_start_reviewing_with_nothing_left_says_so(mo):
    response = mo.post("/portal/start/", follow=True)
    assert any("Nothing left to review" in m for m in messages_of(response))


def test_a_user_without_a_role_is_told_to_ask_a_lead(client_for):
    page = client_for(make_user("visitor")).get("/portal/queue/review/")
    assert page.status_code == 403 and "no reviewer role" in page.content.decode()


# --- Page numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["2", str(10**20)])
def test_a_page_past_the_end_says_so_and_links_to_the_first_however_big_its_number(mo, make_item,
                                                                                   page):  # noqa: F811
    make_item(5)
    response = mo.get("/portal/queue/review/", {"project": "portal", "page": page})
    body = response.content.decode()
    assert response.status_code == 200
    assert f"Page {page} is past the end of this list." in body
    assert 'href="?project=portal">Go to the first page' in body


@pytest.mark.parametrize("page", ["-3", "0", "abc", ""])
def test_a_negative_or_garbled_page_number_shows_the_first_page(mo, make_item, page):  # noqa: F811
    item = make_item(5)
    response = mo.get("/portal/queue/review/", {"page": page})
    assert response.status_code == 200 and f"/portal/item/{item.pk}/" in response.content.decode()


def test_the_pages_stop_at_the_queue_depth_and_say_so(mo, make_item, monkeypatch):  # noqa: F811
    monkeypatch.setattr(review, "QUEUE_DEPTH", 50)
    for _ in range(51):
        make_item()
    first = mo.get("/portal/queue/review/").content.decode()
    assert "The pages stop here: filter the list to reach the rest." in first and "Next →" not in first
    assert "Page 2 is past the end of this list." in mo.get("/portal/queue/review/?page=2").content.decode()


# --- The dashboard's backlog --------------------------------------------------------------


def backlog_rows(page: str) -> dict[str, list[str]]:
    """The backlog table as a lead reads it: project name → the other cells' text."""
    body = page.split("<h2>Backlog</h2>", 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = [" ".join(re.sub(r"<[^>]+>", " ", td).split()) for td in re.findall(r"<td>(.*?)</td>", row, re.S)]
        rows[cells[0]] = cells[1:]
    return rows


def test_the_dashboard_backlog_costs_the_same_queries_for_more_projects_and_counts_each(
        client_for, lead, make_item, make_project, monkeypatch):  # noqa: F811
    make_item(90)
    make_item(20)
    make_item(10, decision=Decision.ESCALATED)
    make_item(200, status=Status.PROCESSING)  # not scored yet: waits for Hive, not for review
    dashboard = client_for(lead)
    dashboard.get("/portal/dashboard/")
    with CaptureQueriesContext(connection) as one_project:
        dashboard.get("/portal/dashboard/")
    busy, _ = make_project("busy", review_sla_minutes=30), make_project("quiet", review_sla_minutes=45)
    for _ in range(3):
        make_item(10, target=busy)
    make_item(5, target=busy, decision=Decision.ESCALATED)
    make_item(5, target=busy, decision=Decision.APPROVED)
    monkeypatch.setattr(review, "BACKLOG_CAP", 2)
    with CaptureQueriesContext(connection) as three_projects:
        page = dashboard.get("/portal/dashboard/").content.decode()
    assert len(three_projects.captured_queries) == len(one_project.captured_queries)
    assert backlog_rows(page) == {
        "Busy": ["2+", "1", "10 minutes", "30 min"],
        "Portal": ["2", "1", "1 hour, 30 minutes", "60 min late"],
        "Quiet": ["0", "0", "—", "45 min"],
    }
