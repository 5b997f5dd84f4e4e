"""Settings come from the environment; malformed values stop start-up."""

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from hiveportal import env
from tests.conftest import REPO

PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "k3y-for-the-deploy-check-9f8e7d6c5b4a3928171615141312111009080706",
    "DJANGO_ALLOWED_HOSTS": "portal.example.com",
}


def run_django(args: list[str], extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HIVE_", "Q_"))}
    clean.pop("ALLOW_PRIVATE_URLS", None)
    clean.update({"DJANGO_SETTINGS_MODULE": "hiveportal.settings", **extra_env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("DJANGO_DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://root@localhost/db"),
        ("DATABASE_URL", "not a url"),
        ("REDIS_URL", "localhost:6379"),
        ("MAX_UPLOAD_MB", "lots"),
        ("API_THROTTLE_RATE", "fast"),
        ("HIVE_API_URL", "ftp://hive"),
        ("HIVE_SIMULATOR", "sometimes"),
    ],
)
def test_a_malformed_variable_stops_start_up_naming_it(name, value):
    result = run_django(["check"], {**PRODUCTION_ENV, name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr


def test_production_settings_need_a_secret_key():
    result = run_django(["check"], {"DJANGO_DEBUG": "0"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_settings_need_the_allowed_hosts():
    without = {k: v for k, v in PRODUCTION_ENV.items() if k != "DJANGO_ALLOWED_HOSTS"}
    result = run_django(["check"], without)
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS is not set" in result.stderr


def test_the_webhooks_process_needs_the_webhook_cluster_to_be_set():
    result = run_django(["check"], {**PRODUCTION_ENV, "Q_CLUSTER_NAME": "webhooks"})
    assert result.returncode != 0
    assert "set WEBHOOK_Q_CLUSTER=webhooks" in result.stderr
    both = run_django(["check"], {**PRODUCTION_ENV, "Q_CLUSTER_NAME": "webhooks", "WEBHOOK_Q_CLUSTER": "webhooks"})
    assert both.returncode == 0, both.stderr


def test_check_deploy_is_clean_under_production_settings():
    result = run_django(["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_env_bool_accepts_the_usual_spellings(monkeypatch):
    for value, expected in [("1", True), ("yes", True), ("ON", True), ("0", False), ("false", False)]:
        monkeypatch.setenv("X_FLAG", value)
        assert env.env_bool("X_FLAG") is expected
    monkeypatch.delenv("X_FLAG")
    assert env.env_bool("X_FLAG", default=True) is True


def test_env_int_refuses_values_below_its_minimum(monkeypatch):
    monkeypatch.setenv("X_NUM", "0")
    with pytest.raises(ImproperlyConfigured, match="X_NUM"):
        env.env_int("X_NUM", 5, minimum=1)


def test_database_url_selects_postgresql(monkeypatch):
    monkeypatch.setenv("X_DB", "postgres://u:p@db.internal:5433/portal")
    config = env.database_config("X_DB", "/tmp/x.sqlite3")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.internal", 5433, "portal")


def test_without_database_url_the_default_is_a_sqlite_file(monkeypatch):
    monkeypatch.delenv("X_DB", raising=False)
    config = env.database_config("X_DB", "/tmp/x.sqlite3")
    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_redis_url_switches_the_queue_broker_and_the_cache():
    result = run_django(
        ["shell", "-v", "0", "-c", "from django.conf import settings as s; "
                        "print(s.Q_CLUSTER.get('redis'), s.Q_CLUSTER.get('orm'), s.CACHES['default']['BACKEND'])"],
        {**PRODUCTION_ENV, "REDIS_URL": "redis://127.0.0.1:6379/3"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["redis://127.0.0.1:6379/3", "None", "django.core.cache.backends.redis.RedisCache"]


def test_the_queue_timeout_is_below_its_retry():
    from django.conf import settings

    assert settings.Q_CLUSTER["timeout"] < settings.Q_CLUSTER["retry"]
    assert settings.Q_CLUSTER["max_attempts"] > 0
