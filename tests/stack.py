"""Start the real product for end-to-end tests: gunicorn (with the simulator
mounted) and a django-q2 worker, as subprocesses on loopback, sharing the
test database the suite created."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import requests
from django.conf import settings
from django.db import connection

from bench.common import free_port, stop_process_group
from tests.conftest import REPO


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class Stack:
    base_url: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, object] = field(default_factory=dict)

    @property
    def simulator(self) -> str:
        return f"{self.base_url}/simulator"

    def control(self, **changes) -> dict:
        response = requests.post(f"{self.simulator}/control", json=changes, timeout=5)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict:
        return requests.get(f"{self.simulator}/stats", timeout=5).json()

    def start(self, name: str, args: list[str]) -> None:
        log = open(os.path.join(self.env["STACK_LOG_DIR"], f"{name}.log"), "wb")
        self.logs[name] = log
        self.processes[name] = subprocess.Popen(
            args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_worker(self, name: str = "worker") -> None:
        self.start(name, [sys.executable, "manage.py", "qcluster"])

    def kill(self, name: str, sig: int = signal.SIGTERM) -> None:
        """As a supervisor stops it (bench.common.stop_process_group)."""
        stop_process_group(self.processes.pop(name), sig, timeout=20)

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name)
        for log in self.logs.values():
            log.close()

    def log(self, name: str) -> str:
        path = os.path.join(self.env["STACK_LOG_DIR"], f"{name}.log")
        with open(path, errors="replace") as handle:
            return handle.read()[-5000:]


def start_stack(log_dir: str, *, workers: int = 2, extra_env: dict[str, str] | None = None) -> Stack:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "HIVE_", "Q_", "PYTEST"))
    }
    env.update({
        "DJANGO_SETTINGS_MODULE": "hiveportal.settings",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "HIVE_SIMULATOR": "1",
        "ALLOW_PRIVATE_URLS": "1",
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PORTAL_BASE_URL": base_url,
        "Q_WORKERS": str(workers),
        "HIVE_READ_TIMEOUT": "20",
        "STACK_LOG_DIR": log_dir,
        **(extra_env or {}),
    })
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    stack = Stack(base_url=base_url, env=env)
    # The workers' pooled connections to the mounted simulator sit idle between
    # tests; at production's 5 s keep-alive one could be closed just as a Hive call
    # leaves on it, and the test would see a second attempt.
    stack.start("web", [sys.executable, "-m", "gunicorn", "hiveportal.wsgi", "--bind", f"127.0.0.1:{port}",
                        "--workers", "1", "--threads", "16", "--timeout", "120", "--keep-alive", "300"])
    stack.start_worker()
    _wait_until_up(stack)
    return stack


def _wait_until_up(stack: Stack, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.processes["web"].poll() is not None:
            raise RuntimeError(f"web server exited:\n{stack.log('web')}")
        try:
            if requests.get(f"{stack.simulator}/stats", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"web server did not start:\n{stack.log('web')}")


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
