"""Operator admin for partners and their API keys: a new key is shown once,
keys can be revoked, and their last use is visible."""

from __future__ import annotations

import re

from django.utils import timezone

from moderation.models import ApiKey, AuditEvent, Submission
from moderation.services.keys import authenticate_key, issue_key

KEY_PATTERN = re.compile(r"hp_[0-9a-f]{12}_[A-Za-z0-9_\-]{20,}")


def hidden_fields(page: str) -> dict:
    """A form page's hidden inputs: what a browser sends back with the form."""
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))


def issue_form(client, partner, name: str = "") -> dict:
    """The issue form as a browser fills it in, once drawn."""
    page = client.get(f"/admin/moderation/partner/{partner.pk}/issue-key/").content.decode()
    return {**hidden_fields(page), "name": name}


def test_issuing_a_key_shows_it_once_and_it_works(admin_client, partner):
    url = f"/admin/moderation/partner/{partner.pk}/issue-key/"
    response = admin_client.post(url, issue_form(admin_client, partner, "uploader"))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    plaintext = KEY_PATTERN.search(response.content.decode()).group(0)
    key = authenticate_key(plaintext)
    assert key is not None and key.partner == partner and key.name == "uploader"
    # Never again: not on the partner page, the key page, the key list, nor in a cookie.
    for url in (f"/admin/moderation/partner/{partner.pk}/change/", f"/admin/moderation/apikey/{key.pk}/change/",
                "/admin/moderation/apikey/", "/admin/"):
        assert plaintext not in admin_client.get(url).content.decode()
    assert all(plaintext not in cookie.value for cookie in admin_client.cookies.values())
    event = AuditEvent.objects.get(action="operator.api_key_issued")
    assert event.partner == partner and event.data["prefix"] == key.prefix
    assert plaintext not in str(event.data)


def test_reloading_the_new_key_page_issues_no_second_key_and_says_why(admin_client, partner):
    url = f"/admin/moderation/partner/{partner.pk}/issue-key/"
    form = issue_form(admin_client, partner, "uploader")
    plaintext = KEY_PATTERN.search(admin_client.post(url, form).content.decode()).group(0)
    reloaded = admin_client.post(url, form, follow=True)  # the browser re-posts the same form
    page = reloaded.content.decode()
    key = ApiKey.objects.get(partner=partner)
    assert "This form was already used: key" in page and f"hp_{key.prefix}_…" in page
    assert "Issue another from the partner page" in page
    assert not KEY_PATTERN.search(page)
    assert authenticate_key(plaintext) == key  # the key shown the first time still works
    # A fresh form issues another key.
    admin_client.post(url, issue_form(admin_client, partner))
    assert ApiKey.objects.filter(partner=partner).count() == 2


def test_an_out_of_date_issue_form_issues_nothing(admin_client, partner):
    page = admin_client.post(f"/admin/moderation/partner/{partner.pk}/issue-key/", {"name": "x"}).content.decode()
    assert "This form is out of date" in page
    assert not ApiKey.objects.exists()


def test_the_issue_key_page_asks_before_issuing(admin_client, partner):
    response = admin_client.get(f"/admin/moderation/partner/{partner.pk}/issue-key/")
    assert response.status_code == 200 and "shown once" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_the_issue_key_action_opens_the_issue_form(admin_client, partner):
    response = admin_client.post("/admin/moderation/partner/",
                                 {"action": "issue_key", "_selected_action": [partner.pk]})
    assert response.status_code == 302
    assert response["Location"] == f"/admin/moderation/partner/{partner.pk}/issue-key/"
    assert not ApiKey.objects.exists()  # a reload of the action's answer issues nothing either


def test_the_issue_key_action_refuses_several_partners(admin_client, partner):
    from moderation.models import Partner

    other = Partner.objects.create(name="other")
    response = admin_client.post("/admin/moderation/partner/",
                                 {"action": "issue_key", "_selected_action": [partner.pk, other.pk]}, follow=True)
    assert "exactly one partner" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_revoking_a_key_stops_it_working_and_is_audited(admin_client, partner):
    issued = issue_key(partner)
    response = admin_client.post("/admin/moderation/apikey/",
                                 {"action": "revoke", "_selected_action": [issued.api_key.pk]}, follow=True)
    assert "Revoked 1 key" in response.content.decode()
    assert authenticate_key(issued.plaintext) is None
    assert AuditEvent.objects.get(action="operator.api_key_revoked").data == {"prefix": issued.api_key.prefix}


def test_the_revoke_button_revokes_once(admin_client, partner):
    issued = issue_key(partner)
    url = f"/admin/moderation/apikey/{issued.api_key.pk}/revoke/"
    admin_client.post(url)
    second = admin_client.post(url, follow=True)
    assert "already revoked" in second.content.decode()
    assert AuditEvent.objects.filter(action="operator.api_key_revoked").count() == 1
    assert admin_client.get(url).status_code == 405


def test_the_last_use_of_a_key_is_shown(admin_client, partner):
    issued = issue_key(partner)
    authenticate_key(issued.plaintext)
    used = ApiKey.objects.get().last_used_at
    assert used is not None
    page = admin_client.get("/admin/moderation/apikey/").content.decode()
    assert "Last used" in page and f"{timezone.localtime(used):%Y}" in page
    partner_page = admin_client.get(f"/admin/moderation/partner/{partner.pk}/change/").content.decode()
    assert "active" in partner_page and f"hp_{issued.api_key.prefix}_…" in partner_page


def test_a_partner_with_submissions_cannot_be_deleted(admin_client, partner, make_project):
    Submission.objects.create(project=make_project(), partner=partner, source="text_data", text_data="x")
    page = admin_client.get(f"/admin/moderation/partner/{partner.pk}/delete/").content.decode()
    assert "deactivate the partner instead" in page
