"""A moderator who filters the review list and starts reviewing stays in that
list: prev/next, Skip, "Submit and next" and the way back all keep the queue and
its filters, and the next item handed out is the next one the list showed."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from moderation.models import Decision
from moderation.services import review
from tests.test_portal_review import (  # noqa: F401  (fixtures)
    _clean_cache,
    make_item,
    make_user,
    moderator,
    project,
)
from tests.test_portal_screens import client_for, messages_of, mo  # noqa: F401  (fixtures)

FILTERED = {"cls": "yes_violence", "min_score": "0.7"}


def form_fields(page, action: str) -> dict[str, str]:
    """The fields a form on the page posts: its hidden inputs."""
    html = page.content.decode()
    form = re.search(rf'<form method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.S)
    assert form, f"no form posting to {action}"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(1)))


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def violence(make_item):
    """Three items the filtered list shows, oldest first, with other items
    older than each of them that the filter leaves out."""
    make_item(90)  # another class, oldest of all
    first = make_item(80, top_class="yes_violence", top_score=0.8)
    make_item(70, top_class="yes_violence", top_score=0.55)  # below the score filter
    second = make_item(60, top_class="yes_violence", top_score=0.9)
    make_item(50)
    third = make_item(40, top_class="yes_violence", top_score=0.75)
    return first, second, third


def open_first(mo, items):  # noqa: F811
    listed = mo.get("/portal/queue/review/", FILTERED)
    html = listed.content.decode()
    assert f'href="/portal/item/{items[0].pk}/?queue=review&amp;cls=yes_violence&amp;min_score=0.7"' in html
    started = mo.post("/portal/start/", form_fields(listed, "/portal/start/"))
    assert started.status_code == 302
    assert started["Location"].startswith(f"/portal/item/{items[0].pk}/?")
    assert query_of(started["Location"]) == {"queue": "review", **FILTERED}
    return mo.get(started["Location"])


def decide(mo, item, page, action="approve", **extra):  # noqa: F811
    fields = form_fields(page, f"/portal/item/{item.pk}/decide/")
    return mo.post(f"/portal/item/{item.pk}/decide/", {**fields, "action": action, "next": "1", **extra})


def test_submit_and_next_hands_the_next_item_of_the_filtered_list(mo, violence):  # noqa: F811
    first, second, third = violence
    page = open_first(mo, violence)
    fields = form_fields(page, f"/portal/item/{first.pk}/decide/")
    assert {k: fields[k] for k in ("queue", *FILTERED)} == {"queue": "review", **FILTERED}

    moved = decide(mo, first, page)
    assert moved["Location"].startswith(f"/portal/item/{second.pk}/?")
    assert query_of(moved["Location"]) == {"queue": "review", **FILTERED}
    second.refresh_from_db()
    assert second.claimed_by is not None

    moved = decide(mo, second, mo.get(moved["Location"]))
    assert moved["Location"].startswith(f"/portal/item/{third.pk}/?")


def test_skip_moves_to_the_next_item_of_the_filtered_list(mo, violence, moderator):  # noqa: F811
    first, second, _ = violence
    page = open_first(mo, violence)
    skipped = mo.post(f"/portal/item/{first.pk}/skip/", form_fields(page, f"/portal/item/{first.pk}/skip/"))
    assert skipped["Location"].startswith(f"/portal/item/{second.pk}/?")
    assert query_of(skipped["Location"]) == {"queue": "review", **FILTERED}
    first.refresh_from_db()
    assert first.claimed_by is None


def test_prev_next_and_the_way_back_stay_in_the_filtered_list(mo, violence):  # noqa: F811
    first, second, third = violence
    page = mo.get(f"/portal/item/{second.pk}/", {"queue": "review", **FILTERED})
    html = page.content.decode()
    query = "queue=review&amp;cls=yes_violence&amp;min_score=0.7"
    assert f'rel="prev" href="/portal/item/{first.pk}/?{query}"' in html
    assert f'rel="next" href="/portal/item/{third.pk}/?{query}"' in html
    assert 'href="/portal/queue/review/?cls=yes_violence&amp;min_score=0.7" class="muted"' in html

    unfiltered = mo.get(f"/portal/item/{second.pk}/", {"queue": "review"}).content.decode()
    assert 'rel="next" href="/portal/item/' in unfiltered
    assert f'rel="next" href="/portal/item/{third.pk}/' not in unfiltered  # an unfiltered item lies between


def test_the_end_of_the_filtered_list_says_so_and_goes_back_to_it(mo, make_item):  # noqa: F811
    only = make_item(80, top_class="yes_violence", top_score=0.8)
    outside = make_item(90)  # older, but not in the list
    page = open_first(mo, [only])
    done = decide(mo, only, page)
    assert done["Location"] == "/portal/queue/review/?cls=yes_violence&min_score=0.7"
    assert "That was the last one matching your filters." in messages_of(mo.get(done["Location"]))
    outside.refresh_from_db()
    assert outside.claimed_by is None and outside.decision == Decision.PENDING


def test_a_stale_decision_returns_to_the_item_inside_its_list(mo, violence, client_for, moderator):  # noqa: F811
    first = violence[0]
    page = open_first(mo, violence)
    fields = form_fields(page, f"/portal/item/{first.pk}/decide/")
    boss = make_user("boss", "lead")
    first.refresh_from_db()
    review.decide(boss, first, "approve", seen=review.seen_token(first))
    refused = mo.post(f"/portal/item/{first.pk}/decide/", {**fields, "action": "approve", "next": "1"})
    assert refused["Location"].startswith(f"/portal/item/{first.pk}/?")
    assert query_of(refused["Location"]) == {"queue": "review", **FILTERED}


def test_filters_that_are_not_valid_are_ignored_not_an_error(mo, violence):  # noqa: F811
    second = violence[1]
    page = mo.get(f"/portal/item/{second.pk}/", {"queue": "review", "min_score": "lots", "project": "nope"})
    assert page.status_code == 200
