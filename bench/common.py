"""Shared helpers for the benchmarks: a throwaway database, the real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(workdir: Path, database_url: str | None = None, redis_url: str | None = None, **extra) -> dict:
    """Environment for a throwaway deployment: SQLite + ORM broker unless told otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HIVE_", "Q_"))}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env.update({
        "DJANGO_SETTINGS_MODULE": "hiveportal.settings",
        "DJANGO_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "HIVE_SIMULATOR": "1",
        "ALLOW_PRIVATE_URLS": "1",
        "MEDIA_ROOT": str(workdir / "media"),
        "DATABASE_URL": database_url or f"sqlite:///{workdir / 'bench.sqlite3'}",
        "LOG_LEVEL": "WARNING",
    })
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def fresh_postgres(name: str) -> str:
    for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", sql], check=True)
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def manage(env: dict, *args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)


def setup_django(env: dict) -> None:
    os.environ.update(env)
    import django

    django.setup()


class Process:
    def __init__(self, name: str, args: list[str], env: dict, logdir: Path):
        self.name = name
        self.log = open(logdir / f"{name}.log", "wb")
        self.popen = subprocess.Popen(args, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, sig: int = signal.SIGTERM) -> None:
        try:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


def start_simulator(env: dict, logdir: Path) -> tuple[Process, str]:
    port = free_port()
    process = Process("simulator", [PYTHON, "manage.py", "run_hive_simulator", "--port", str(port)], env, logdir)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/stats")
    return process, url


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def workdir(name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"hiveportal-{name}-"))
    (path / "media").mkdir()
    return path
