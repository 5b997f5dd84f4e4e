"""Fixes from the portal's UI audit, each asserted as a moderator or a lead
would notice it: who an escalation can be handed to, what an unscored item
shows, the history's wording, Start reviewing under filters, short-id search,
the portal's own 404 page, failure reasons in the Failed queue, small wording."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.utils import timezone

from moderation.hive.normalise import normalise
from moderation.models import Decision, Result, ResultSource, Status
from moderation.services import review
from moderation.services.results import record_result
from tests.conftest import FIXTURES
from tests.test_portal_review import (  # noqa: F401  (fixtures)
    _clean_cache,
    lead,
    make_item,
    make_user,
    moderator,
    outsider,
    project,
)
from tests.test_portal_screens import client_for, messages_of, mo  # noqa: F401  (fixtures)


def visible(response) -> str:
    """The page's text as a person reads it: no tags, no attributes (a title
    only shows on hover), whitespace collapsed."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# --- 1. Escalations are handed to leads only --------------------------------------------------


def assign_options(page) -> list[str]:
    select = re.search(r'<select id="assign-user" name="user">(.*?)</select>', page.content.decode(), re.S)
    return re.findall(r">([^<]+)</option>", select.group(1)) if select else []


def test_an_escalated_item_is_offered_and_assigned_to_leads_only(client_for, make_item, lead, moderator):  # noqa
    boss = make_user("boss", "lead")
    make_user("root", superuser=True)  # superusers count as leads
    escalated = make_item(10, decision=Decision.ESCALATED)
    as_lead = client_for(lead)
    assert assign_options(as_lead.get(f"/portal/item/{escalated.pk}/")) == ["boss", "lead", "root"]

    refused = as_lead.post(f"/portal/item/{escalated.pk}/assign/", {"user": moderator.pk}, follow=True)
    assert "mo is not a lead: only a lead can decide an escalated item." in messages_of(refused)
    escalated.refresh_from_db()
    assert escalated.claimed_by is None
    with pytest.raises(review.InvalidDecision, match="not a lead"):
        review.assign(lead, escalated, moderator)

    as_lead.post(f"/portal/item/{escalated.pk}/assign/", {"user": boss.pk})
    escalated.refresh_from_db()
    assert escalated.claimed_by == boss


def test_a_pending_item_is_still_offered_to_the_projects_moderators(client_for, make_item, lead, moderator):  # noqa
    pending = make_item(10)
    assert assign_options(client_for(lead).get(f"/portal/item/{pending.pk}/")) == ["lead", "mo"]


# --- 2. No scores is not a clean score --------------------------------------------------------


@pytest.mark.parametrize("status", [Status.QUEUED, Status.AWAITING_CALLBACK, Status.FAILED])
def test_an_item_without_a_result_says_no_scores_yet_instead_of_zero_bars(mo, make_item, status):  # noqa: F811
    item = make_item(5, status=status, decision=None, scores=None, top_class="", top_score=None)
    page = mo.get(f"/portal/item/{item.pk}/")
    assert "No scores yet." in visible(page)
    assert "score-row" not in page.content.decode() and "0.00" not in visible(page)


# --- 3. The history says why routing sent an item to review -----------------------------------


def test_the_history_shows_routings_triggers_in_words(mo, make_item, moderator, project):  # noqa: F811
    project.thresholds = {"general_suggestive": {"review": 0.6, "reject": 0.95}}
    project.save()
    item = make_item(5, status=Status.PROCESSING, decision=None, scores=None, top_class="", top_score=None)
    raw = (FIXTURES / "hive" / "image.json").read_text()
    result = json.loads(raw)
    record_result(item.pk, raw=raw, result=result, normalised=normalise(result), source=ResultSource.SYNC)
    item.refresh_from_db()
    review.decide(moderator, item, "approve", seen=review.seen_token(item))

    history = visible(mo.get(f"/portal/item/{item.pk}/")).split("History", 1)[1].split("Keyboard shortcuts")[0]
    # The router stores a dict, a moderator's decision a list.
    assert "decision.routed decision: pending · triggered: general_suggestive 0.90 ≥ review 0.60 " in history
    assert history.split("decision.moderator")[1].strip().endswith("· triggered: general_suggestive")
    assert "{" not in history


# --- 4. Start reviewing claims from the list on screen ------------------------------------------


def start_form_fields(page) -> dict[str, str]:
    form = re.search(r'<form method="post" action="/portal/start/">(.*?)</form>', page.content.decode(), re.S)
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(1)))


def test_start_reviewing_claims_the_first_item_of_the_filtered_list(mo, make_item, make_project,
                                                                     moderator):  # noqa: F811
    elsewhere = make_project("elsewhere")
    elsewhere.reviewers.add(moderator)
    make_item(60, target=elsewhere, top_class="yes_violence", top_score=0.8)  # another project
    make_item(50)  # another class
    make_item(40, top_class="yes_violence", top_score=0.55)  # below the score filter
    make_item(3 * 24 * 60, top_class="yes_violence", top_score=0.8)  # before the date filter
    wanted = make_item(30, top_class="yes_violence", top_score=0.8)
    make_item(20, top_class="yes_violence", top_score=0.8)  # newer
    since = (timezone.localdate() - timedelta(days=2)).isoformat()
    shown = mo.get("/portal/queue/review/", {"project": "portal", "cls": "yes_violence", "min_score": "0.7",
                                             "date_from": since})
    assert f"/portal/item/{wanted.pk}/" in shown.content.decode()

    started = mo.post("/portal/start/", start_form_fields(shown))
    assert started["Location"] == (f"/portal/item/{wanted.pk}/?queue=review&project=portal&cls=yes_violence"
                                   f"&min_score=0.7&date_from={since}")


def test_start_reviewing_with_nothing_matching_the_filters_says_so_and_claims_nothing(mo, make_item):  # noqa
    other_class = make_item(30)
    response = mo.post("/portal/start/", {"queue": "review", "cls": "yes_violence"}, follow=True)
    assert any("Nothing left to review" in m for m in messages_of(response))
    other_class.refresh_from_db()
    assert other_class.claimed_by is None


# --- 5. Search finds the short ids the portal shows ---------------------------------------------


SHORT = "2b634c0c"


@pytest.fixture
def near_ids(make_item):  # noqa: F811
    """Four items around the short id 2b634c0c: two inside its range, one each side."""
    def at(hexid: str):
        return make_item(5, id=uuid.UUID(hexid), status=Status.FAILED, decision=None)

    return {"first": at("2b634c0c000000000000000000000000"), "last": at("2b634c0cffffffffffffffffffffffff"),
            "before": at("2b634c0bffffffffffffffffffffffff"), "after": at("2b634c0d000000000000000000000000")}


def test_search_lists_every_item_whose_id_starts_with_the_short_id(mo, near_ids):  # noqa: F811
    page = mo.get("/portal/search/", {"q": SHORT}).content.decode()
    assert f"/portal/item/{near_ids['first'].pk}/" in page and f"/portal/item/{near_ids['last'].pk}/" in page
    assert f"/portal/item/{near_ids['before'].pk}/" not in page and f"/portal/item/{near_ids['after'].pk}/" not in page


@pytest.mark.parametrize("typed", ["2b634c0cf", "2B634C0C-FFFF", " 2b634c0c-ffff-ffff "])
def test_a_longer_prefix_with_or_without_dashes_opens_the_one_item(mo, near_ids, typed):  # noqa: F811
    response = mo.get("/portal/search/", {"q": typed})
    assert response["Location"] == f"/portal/item/{near_ids['last'].pk}/?queue=search"


def test_fewer_than_eight_hex_digits_is_not_an_id_prefix(mo, near_ids):  # noqa: F811
    page = visible(mo.get("/portal/search/", {"q": SHORT[:7]}))
    assert "Nothing here" in page


def test_an_external_id_that_looks_like_hex_is_still_found_exactly(mo, make_item):  # noqa: F811
    item = make_item(5, external_id="deadbeef")
    response = mo.get("/portal/search/", {"q": "deadbeef"})
    assert response["Location"] == f"/portal/item/{item.pk}/?queue=review"


def test_a_short_id_search_reads_the_primary_key_index_not_every_row(lead, near_ids):  # noqa: F811
    found = review.queue_queryset(lead, "search", review.QueueFilters(q=SHORT))
    assert " LIKE " not in str(found.query).upper()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A four-row table is cheaper to scan: ask whether the index can serve the range at all.
            cursor.execute("SET LOCAL enable_seqscan = off")
        plan = found.explain()
    assert re.search(r"moderation_submission_pkey|sqlite_autoindex_moderation_submission_1", plan), plan


# --- 6. The portal's 404 is a portal page -------------------------------------------------------


def assert_portal_404(response, *, tabs: bool) -> None:
    page = response.content.decode()
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
    assert "/static/portal/portal.css" in page and "Hive Portal" in page
    assert ("Needs review" in page) is tabs
    assert 'href="/portal/">Back to the queues</a>' in page


def test_a_mistyped_queue_is_a_portal_404_with_a_way_back(mo):  # noqa: F811
    assert_portal_404(mo.get("/portal/queue/reveiw/"), tabs=True)


def test_an_item_of_a_project_not_granted_is_a_portal_404(client_for, make_item, outsider):  # noqa: F811
    assert_portal_404(client_for(outsider).get(f"/portal/item/{make_item(5).pk}/"), tabs=True)


def test_an_unrouted_portal_path_is_a_portal_404_even_logged_out(client):
    assert_portal_404(client.get("/portal/no-such-page/"), tabs=False)


# --- 8. The Failed queue says why -----------------------------------------------------------------


def test_the_failed_queue_shows_each_failure_reason_as_text(mo, make_item):  # noqa: F811
    failed = dict(status=Status.FAILED, decision=None, scores=None, top_class="", top_score=None)
    make_item(5, error="Hive could not download the URL (HTTP 404). Check that it is public.", **failed)
    make_item(6, error="Hive refused the media: " + "very long explanation " * 20, **failed)
    page = visible(mo.get("/portal/queue/failed/"))
    assert "Hive could not download the URL (HTTP 404). Check that it is public." in page
    assert "Hive refused the media: very long explanation" in page
    assert "very long explanation " * 20 not in page and "…" in page


# --- Nits -----------------------------------------------------------------------------------------------


def test_a_lead_on_an_escalation_is_not_told_a_note_is_needed_to_escalate(client_for, make_item, lead,
                                                                          mo):  # noqa: F811
    escalated, pending = make_item(10, decision=Decision.ESCALATED), make_item(5)
    assert "Note (optional)" in visible(client_for(lead).get(f"/portal/item/{escalated.pk}/"))
    assert "required to escalate" not in visible(client_for(lead).get(f"/portal/item/{escalated.pk}/"))
    assert "Note (optional; required to escalate)" in visible(mo.get(f"/portal/item/{pending.pk}/"))


def test_a_fresh_wait_or_decision_reads_less_than_a_minute_not_zero_minutes(mo, make_item, moderator):  # noqa
    fresh = make_item()
    item_page, queue = visible(mo.get(f"/portal/item/{fresh.pk}/")), visible(mo.get("/portal/queue/review/"))
    assert "waiting less than a minute" in item_page and "less than a minute" in queue
    review.decide(moderator, fresh, "approve", seen=review.seen_token(fresh))
    decided, item_page = visible(mo.get("/portal/queue/decided/")), visible(mo.get(f"/portal/item/{fresh.pk}/"))
    assert "less than a minute ago" in decided and "less than a minute ago" in item_page
    assert not any("0 minutes" in text for text in (item_page, queue, decided))


def test_a_speech_transcript_is_blurred_like_text_at_the_same_score(mo, make_item, media_samples):  # noqa: F811
    speech = make_item(5, source="media", media_kind="audio", media_mime="audio/mpeg", text_data="",
                       top_class="violence", top_score=0.8)
    speech.media.save("a.mp3", ContentFile((media_samples / "sample.mp3").read_bytes()))
    Result.objects.create(submission=speech, source="sync", fingerprint="f", raw="{}", scores={"violence": 0.8},
                          transcript="I will find you")
    page = mo.get(f"/portal/item/{speech.pk}/").content.decode()
    assert re.search(r'<input type="checkbox" id="reveal"(?![^>]*checked)[^>]*>', page), "starts blurred"
    figure = re.search(r'<figure class="media[^"]*"[^>]*data-media>(.*?)</figure>', page, re.S).group(1)
    assert "I will find you" in figure and "data-veil" in figure
    assert '<label for="reveal" class="tool">Reveal' in page


def test_a_form_from_a_page_opened_before_logging_in_again_gets_a_page_that_says_so(moderator, make_item):  # noqa
    from django.test import Client

    item = make_item(5)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(moderator)
    response = browser.post(f"/portal/item/{item.pk}/claim/", {"csrfmiddlewaretoken": "from-an-old-page"})
    assert response.status_code == 403
    page = visible(response)
    assert "This page was out of date" in page and "Nothing was changed" in page
    item.refresh_from_db()
    assert item.claimed_by is None
