"""/healthz and /readyz: liveness touches nothing; readiness answers 503 naming
the component that is down (database, broker, storage) and 200 again once it
is back.

Outages are real but private: a redis-server and an S3 server these tests
start and stop themselves, and a proxy in front of PostgreSQL whose line they
cut. The machine's shared PostgreSQL and Redis are never stopped.
"""

from __future__ import annotations

import pytest
import requests
from django.db import connection
from django.test import Client
from moto.server import ThreadedMotoServer

from bench.common import free_port
from tests.ops_stack import (
    RedisServer,
    TcpProxy,
    deployment_env,
    make_private_bucket,
    read_log,
    s3_env,
    s3_storages,
    start_web,
    wait_until,
)
from tests.stack import database_url

BUCKET = "hiveportal-health-test"


def closed_port() -> int:
    return free_port()  # nothing listens there


def test_healthz_answers_without_touching_anything(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/8"  # even with the broker gone
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_200_when_database_broker_and_storage_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ready"
    assert response.json()["down"] == []
    assert set(response.json()["checks"]) == {"database", "broker", "storage"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_readyz_is_503_naming_the_broker_when_redis_does_not_answer(client, settings):
    port = closed_port()
    settings.REDIS_URL = f"redis://:very-secret-password@127.0.0.1:{port}/8"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["broker"]
    assert response.json()["checks"]["broker"].startswith("down: ")
    assert "very-secret-password" not in response.content.decode()
    assert str(port) not in response.content.decode()  # no address either


@pytest.mark.django_db
def test_readyz_is_503_naming_the_storage_when_the_bucket_does_not_answer(client, settings):
    settings.STORAGES = s3_storages(f"http://127.0.0.1:{closed_port()}", BUCKET)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["storage"]


def test_readyz_is_503_when_media_root_is_not_a_usable_directory(client, settings, tmp_path, db):
    blocker = tmp_path / "media"
    blocker.write_text("a file where the media directory should be")
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(blocker)}}}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["storage"]


def test_health_endpoints_answer_any_host_header_and_only_get(db):
    client = Client(HTTP_HOST="10.1.2.3:8000")  # a load balancer probing by address
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.post("/readyz").status_code == 405


# --- Against a running web process, with real outages -------------------------------------


@pytest.fixture
def outage_stack(django_db_setup, django_db_blocker, tmp_path):
    """A gunicorn web process whose database (through a proxy, on PostgreSQL),
    Redis and S3 server can each be taken away and brought back."""
    proxy = None
    with django_db_blocker.unblock():
        db_url = database_url()
        if connection.vendor == "postgresql":
            settings_dict = connection.settings_dict
            proxy = TcpProxy((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432)))
            db_url = db_url.replace(f":{settings_dict['PORT'] or 5432}/", f":{proxy.port}/")
    redis = RedisServer(tmp_path)
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{moto_port}"
    make_private_bucket(endpoint, BUCKET)
    env = deployment_env(db_url, REDIS_URL=redis.url, **s3_env(endpoint, BUCKET))
    web, url = start_web("web", env, tmp_path)
    yield dict(url=url, redis=redis, moto=moto, proxy=proxy, log=lambda: read_log(tmp_path, "web"))
    web.stop()
    moto.stop()
    redis.stop()
    if proxy is not None:
        proxy.cut()


def ready(url: str) -> tuple[int, list[str]]:
    response = requests.get(f"{url}/readyz", timeout=15)
    return response.status_code, response.json()["down"]


def becomes(url: str, expected: tuple[int, list[str]], timeout: float = 20):
    return wait_until(lambda: ready(url) == expected, timeout=timeout, interval=0.3,
                      message=f"/readyz to answer {expected}")


def test_readyz_follows_the_broker_going_away_and_coming_back(outage_stack):
    url, redis = outage_stack["url"], outage_stack["redis"]
    assert ready(url) == (200, []), outage_stack["log"]()

    redis.stop()
    becomes(url, (503, ["broker"]))
    redis.start()
    becomes(url, (200, []))


def test_readyz_follows_the_object_store_going_away_and_coming_back(outage_stack):
    url, moto = outage_stack["url"], outage_stack["moto"]
    assert ready(url) == (200, []), outage_stack["log"]()

    moto.stop()
    becomes(url, (503, ["storage"]))
    moto.start()  # same port; the bucket lives in this process and is still there
    becomes(url, (200, []))


def test_readyz_follows_postgresql_going_away_and_coming_back(outage_stack):
    proxy = outage_stack["proxy"]
    if proxy is None:
        pytest.skip("the database outage needs PostgreSQL (DATABASE_URL=postgres://...); SQLite is a file")
    url = outage_stack["url"]
    assert ready(url) == (200, []), outage_stack["log"]()

    proxy.cut()
    becomes(url, (503, ["database"]))
    proxy.restore()
    becomes(url, (200, []))
