"""Who may open each portal view: anonymous users, users without a reviewer
role, moderators without the project, moderators of the project, leads."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.test import Client

from moderation.models import Decision, Submission
from tests.test_portal_review import (  # noqa: F401  (fixtures)
    _clean_cache,
    lead,
    make_item,
    make_user,
    moderator,
    outsider,
    project,
)

ROLES = ("anonymous", "no_role", "outsider", "moderator", "lead")
LOGIN = "login"  # expected: a redirect to the login page


@pytest.fixture
def item(make_item, media_samples) -> Submission:
    submission = make_item(10, source="media", media_kind="image", media_mime="image/png", text_data="")
    submission.media.save("x.png", ContentFile((media_samples / "sample.png").read_bytes()))
    return submission


@pytest.fixture
def clients(db, moderator, outsider, lead) -> dict[str, Client]:  # noqa: F811
    users = {"no_role": make_user("nobody"), "outsider": outsider, "moderator": moderator, "lead": lead}
    clients = {"anonymous": Client()}
    for role, user in users.items():
        clients[role] = Client()
        clients[role].force_login(user)
    return clients


def _expect(anonymous=LOGIN, no_role=403, outsider=200, moderator=200, lead=200) -> dict:
    return dict(anonymous=anonymous, no_role=no_role, outsider=outsider, moderator=moderator, lead=lead)


OPEN = _expect()
LEADS_ONLY = _expect(outsider=403, moderator=403)
PROJECT_ONLY = _expect(outsider=404)
PROJECT_POST = _expect(outsider=404, moderator=302, lead=302)

# (name, method, path with {id}, data, expected status per role)
VIEWS = [
    ("home", "get", "/portal/", None, _expect(outsider=302, moderator=302, lead=302)),
    ("needs review", "get", "/portal/queue/review/", None, OPEN),
    ("mine", "get", "/portal/queue/mine/", None, OPEN),
    ("awaiting hive", "get", "/portal/queue/hive/", None, OPEN),
    ("failed", "get", "/portal/queue/failed/", None, OPEN),
    ("recently decided", "get", "/portal/queue/decided/", None, OPEN),
    ("escalated", "get", "/portal/queue/escalated/", None, LEADS_ONLY),
    ("search", "get", "/portal/search/?q=nothing-matches", None, OPEN),
    ("grid", "get", "/portal/grid/", None, OPEN),
    ("grid decide", "post", "/portal/grid/", {"ids": ["{id}"], "action": "approve", "seen-{id}": "pending@"},
     _expect(outsider=302, moderator=302, lead=302)),
    ("dashboard", "get", "/portal/dashboard/", None, LEADS_ONLY),
    ("preferences", "get", "/portal/preferences/", None, OPEN),
    ("start reviewing", "post", "/portal/start/", {}, _expect(outsider=302, moderator=302, lead=302)),
    ("review screen", "get", "/portal/item/{id}/", None, PROJECT_ONLY),
    ("media", "get", "/portal/item/{id}/media/", None, PROJECT_ONLY),
    ("decide", "post", "/portal/item/{id}/decide/", {"action": "approve", "seen": "pending@"}, PROJECT_POST),
    ("skip", "post", "/portal/item/{id}/skip/", {}, PROJECT_POST),
    ("claim", "post", "/portal/item/{id}/claim/", {}, PROJECT_POST),
    ("release", "post", "/portal/item/{id}/release/", {}, PROJECT_POST),
    ("presence", "post", "/portal/item/{id}/presence/", {}, PROJECT_ONLY),
    ("assign", "post", "/portal/item/{id}/assign/", {"user": ""}, _expect(outsider=403, moderator=403, lead=302)),
]


def _fill(value, item):
    if isinstance(value, str):
        return value.replace("{id}", str(item.pk))
    if isinstance(value, list):
        return [_fill(v, item) for v in value]
    if isinstance(value, dict):
        return {_fill(k, item): _fill(v, item) for k, v in value.items()}
    return value


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name, method, path, data, expected", VIEWS, ids=[v[0] for v in VIEWS])
def test_each_view_answers_each_role_as_it_should(clients, item, role, name, method, path, data, expected):
    url = _fill(path, item)
    client = clients[role]
    response = client.get(url) if method == "get" else client.post(url, _fill(data, item))
    want = expected[role]
    if want == LOGIN:
        assert response.status_code == 302
        assert response["Location"].startswith("/portal/login/?next=")
    else:
        assert response.status_code == want, f"{name} as {role}: {response.status_code}"


def test_a_moderator_without_the_project_never_sees_its_items_listed(clients, item):
    for path in ("/portal/queue/review/", f"/portal/search/?q={item.pk}", "/portal/grid/"):
        page = clients["outsider"].get(path)
        assert f"/portal/item/{item.pk}/" not in page.content.decode(), path
    assert f"/portal/item/{item.pk}/" in clients["moderator"].get("/portal/queue/review/").content.decode()


def test_an_outsider_cannot_decide_an_item_of_a_project_not_granted(clients, item):
    clients["outsider"].post(f"/portal/item/{item.pk}/decide/", {"action": "reject", "seen": "pending@",
                                                                 "reason": "Nudity"})
    clients["outsider"].post("/portal/grid/", {"ids": [str(item.pk)], "action": "reject", "reason": "Nudity",
                                               f"seen-{item.pk}": "pending@"})
    item.refresh_from_db()
    assert item.decision == Decision.PENDING


def test_anonymous_users_are_sent_to_log_in_and_come_back_after(db, moderator):  # noqa: F811
    client = Client()
    response = client.get("/portal/queue/review/")
    assert response.status_code == 302 and response["Location"] == "/portal/login/?next=/portal/queue/review/"
    page = client.get(response["Location"])
    assert page.status_code == 200 and b'name="password"' in page.content
    wrong = client.post("/portal/login/", {"username": "mo", "password": "nope"})
    assert b"do not match" in wrong.content
    login = client.post("/portal/login/", {"username": "mo", "password": "mo", "next": "/portal/queue/review/"})
    assert login.status_code == 302 and login["Location"] == "/portal/queue/review/"
    assert client.get("/portal/queue/review/").status_code == 200


def test_logging_out_is_a_post_and_ends_the_session(clients):
    client = clients["moderator"]
    assert client.post("/portal/logout/").status_code == 302
    assert client.get("/portal/queue/review/").status_code == 302


def test_forms_refuse_a_post_without_the_csrf_token(item, moderator):  # noqa: F811
    client = Client(enforce_csrf_checks=True)
    client.force_login(moderator)
    response = client.post(f"/portal/item/{item.pk}/decide/", {"action": "approve", "seen": "pending@"})
    assert response.status_code == 403
    item.refresh_from_db()
    assert item.decision == Decision.PENDING


def test_media_is_streamed_with_the_sniffed_type_and_never_sniffed_by_the_browser(clients, item, media_samples):
    response = clients["moderator"].get(f"/portal/item/{item.pk}/media/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert "private" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == (media_samples / "sample.png").read_bytes()


def test_media_without_a_stored_type_is_sniffed_from_its_bytes(clients, item):
    Submission.objects.filter(pk=item.pk).update(media_mime="")
    response = clients["lead"].get(f"/portal/item/{item.pk}/media/")
    assert response["Content-Type"] == "image/png"


def test_media_honours_a_byte_range_so_video_can_seek(clients, item, media_samples):
    data = (media_samples / "sample.png").read_bytes()
    response = clients["moderator"].get(f"/portal/item/{item.pk}/media/", HTTP_RANGE="bytes=8-15")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 8-15/{len(data)}"
    assert b"".join(response.streaming_content) == data[8:16]
    beyond = clients["moderator"].get(f"/portal/item/{item.pk}/media/", HTTP_RANGE=f"bytes={len(data)}-")
    assert beyond.status_code == 416


def test_a_text_item_has_no_media_to_stream(clients, make_item):
    text = make_item(5)
    assert clients["moderator"].get(f"/portal/item/{text.pk}/media/").status_code == 404
