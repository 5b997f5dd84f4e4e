"""Operator admin for partners and their API keys: a new key is shown once,
keys can be revoked, and their last use is visible."""

from __future__ import annotations

import re

from django.utils import timezone

from moderation.models import ApiKey, AuditEvent, Submission
from moderation.services.keys import authenticate_key, issue_key

KEY_PATTERN = re.compile(r"hp_[0-9a-f]{12}_[A-Za-z0-9_\-]{20,}")


def test_issuing_a_key_shows_it_once_and_it_works(admin_client, partner):
    response = admin_client.post(f"/admin/moderation/partner/{partner.pk}/issue-key/", {"name": "uploader"})
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


def test_the_issue_key_page_asks_before_issuing(admin_client, partner):
    response = admin_client.get(f"/admin/moderation/partner/{partner.pk}/issue-key/")
    assert response.status_code == 200 and "shown once" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_the_issue_key_action_issues_one_key_for_one_partner(admin_client, partner):
    response = admin_client.post("/admin/moderation/partner/",
                                 {"action": "issue_key", "_selected_action": [partner.pk]})
    assert KEY_PATTERN.search(response.content.decode())
    assert ApiKey.objects.filter(partner=partner).count() == 1


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
