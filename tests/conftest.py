"""Shared fixtures: a small base setup, objects built inline by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from rest_framework.test import APIClient

from moderation.hive.simulator.server import start_simulator, stop_simulator
from moderation.models import Delivery, Partner, Project, ReviewMode
from moderation.services.keys import issue_key

# The `receiver` fixture (a partner's webhook endpoint) for every test module;
# the simulator's tests define a `receiver` of their own, which wins there.
pytest_plugins = ["tests.webhook_receiver"]

REPO = Path(__file__).resolve().parent.parent
# CI clones main with a copy of shared/ beside it, as in the workspace.
MEDIA_SAMPLES = REPO.parent / "shared" / "media-samples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def media_samples() -> Path:
    assert MEDIA_SAMPLES.is_dir(), f"media samples not found at {MEDIA_SAMPLES}"
    return MEDIA_SAMPLES


@pytest.fixture
def make_project(db):
    def make(slug: str = "visual-sync", **fields) -> Project:
        defaults = dict(
            name=slug.replace("-", " ").title(),
            endpoint_type="visual",
            review_mode=ReviewMode.MODEL_ONLY,
            delivery=Delivery.SYNC,
            hive_api_key=f"sim-{fields.get('endpoint_type', 'visual')}-test",
            thresholds={"general_nsfw": {"review": 0.5, "reject": 0.9}},
            reject_reasons=["Nudity", "Other"],
        )
        defaults.update(fields)
        return Project.objects.create(slug=slug, **defaults)

    return make


@pytest.fixture
def partner(db) -> Partner:
    return Partner.objects.create(name="acme")


@pytest.fixture
def api_key(partner) -> str:
    return issue_key(partner).plaintext


@pytest.fixture
def api(api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key}")
    return client


@pytest.fixture(scope="module")
def simulator() -> str:
    """The Hive simulator on a loopback port, one per test module; its URL."""
    server, url = start_simulator()
    yield url
    stop_simulator(server)


def broker_down(*args, **kwargs):
    """Stands in for `async_task` while the queue's Redis refuses connections."""
    raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
