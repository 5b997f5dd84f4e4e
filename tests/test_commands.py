import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings
from rest_framework.test import APIClient

from moderation.models import ApiKey, AuditEvent, Partner, Project

pytestmark = pytest.mark.django_db


def run(*args) -> list[str]:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


def snapshot():
    User = get_user_model()
    return {
        "projects": sorted(Project.objects.values_list("slug", "endpoint_type", "review_mode", "delivery")),
        "partners": sorted(Partner.objects.values_list("name", flat=True)),
        "keys": sorted(ApiKey.objects.values_list("prefix", "digest", "revoked_at")),
        "users": sorted(User.objects.values_list("username", "is_superuser")),
        "grants": sorted(Partner.projects.through.objects.values_list("partner__name", "project__slug")),
    }


def test_seed_demo_twice_leaves_the_same_rows_and_prints_the_same_key():
    first = run("seed_demo")
    rows = snapshot()
    second = run("seed_demo")
    assert snapshot() == rows
    assert first[-1] == second[-1]
    assert first[-1].startswith("API key: hp_")
    assert {"demo-visual-sync", "demo-visual-async", "demo-visual-review", "demo-text", "demo-speech"} <= {
        slug for slug, *_ in rows["projects"]
    }


def test_seed_demo_key_authenticates_and_sees_every_demo_project():
    key = run("seed_demo")[-1].removeprefix("API key: ")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get("/api/v1/projects/")
    assert response.status_code == 200
    assert "demo-visual-review" in {p["slug"] for p in response.json()}


def test_seed_demo_creates_users_that_can_log_in():
    run("seed_demo")
    User = get_user_model()
    assert User.objects.get(username="admin").check_password("admin")
    assert User.objects.get(username="admin").is_superuser
    assert User.objects.get(username="moderator").groups.filter(name="moderator").exists()


@override_settings(DEMO_MODE=False)
def test_seed_demo_is_refused_under_production_settings():
    with pytest.raises(CommandError, match="production settings"):
        run("seed_demo")
    assert not get_user_model().objects.exists()


def test_create_api_key_prints_a_key_that_authenticates_and_is_not_stored(make_project):
    make_project("alpha")
    make_project("beta")
    output = run("create_api_key", "newco", "--projects", "alpha,beta")
    key = output[-1].split()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get("/api/v1/projects/")
    assert response.status_code == 200
    assert [p["slug"] for p in response.json()] == ["alpha", "beta"]
    stored = ApiKey.objects.get()
    assert key not in (stored.prefix, stored.digest)
    assert stored.prefix in key  # only the prefix is kept in clear


def test_create_api_key_is_idempotent_for_the_partner_and_adds_a_second_key(make_project):
    make_project("alpha")
    run("create_api_key", "newco", "--projects", "alpha")
    run("create_api_key", "newco")
    assert Partner.objects.filter(name="newco").count() == 1
    assert ApiKey.objects.filter(partner__name="newco").count() == 2


def test_create_api_key_refuses_unknown_projects():
    with pytest.raises(CommandError, match="nope"):
        run("create_api_key", "newco", "--projects", "nope")
    assert not Partner.objects.exists()


def test_a_revoked_key_is_refused(make_project):
    from moderation.services.keys import revoke_key

    make_project("alpha")
    key = run("create_api_key", "newco", "--projects", "alpha")[-1].split()[-1]
    revoke_key(ApiKey.objects.get())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get("/api/v1/projects/")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_a_wrong_secret_with_a_real_prefix_is_refused(make_project):
    key = run("create_api_key", "newco")[-1].split()[-1]
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {forged}")
    assert client.get("/api/v1/projects/").status_code == 401
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_the_migrations_describe_the_models_exactly(capsys):
    """A model change without its migration would reach production unmigrated."""
    try:
        call_command("makemigrations", "--check", "--dry-run", verbosity=1)
    except SystemExit:
        pytest.fail(f"models and migrations differ:\n{capsys.readouterr().out}")
