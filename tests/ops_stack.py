"""Throwaway engines and processes on loopback for the operations tests: an
S3-compatible server (moto in server mode), a private redis-server, a TCP
proxy that can cut the line to PostgreSQL, and gunicorn web processes started
the way production starts them (gunicorn.conf.py).

Nothing here stops a shared service: outages are simulated on servers these
helpers started, or on the proxy in front of the shared PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import requests
from django.conf import settings

from bench.common import Process, free_port
from tests.stack import wait_for

S3_KEYS = {"AWS_ACCESS_KEY_ID": "hiveportal-test", "AWS_SECRET_ACCESS_KEY": "hiveportal-test-secret-0123456789"}
S3_REGION = "us-east-1"


def wait_until(predicate, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    return wait_for(predicate, timeout=timeout, interval=interval, message=message)


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
        return True
    except requests.RequestException:
        return False


# --- S3 ---------------------------------------------------------------------------


class MotoServer:
    """moto's S3 in server mode, as its own process: a real HTTP server that
    django-storages talks to over loopback, holding objects in its memory."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = Process("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                        "-p", str(self.port)], _quiet_env(), log_dir)
        wait_until(lambda: _answers(self.endpoint), message="the moto server")

    def client(self):
        return s3_client(self.endpoint)

    def stop(self) -> None:
        self.process.stop()


def s3_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name=S3_REGION,
                        aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"])


def make_private_bucket(endpoint: str, name: str) -> None:
    client = s3_client(endpoint)
    client.create_bucket(Bucket=name)
    client.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True})


def s3_storages(endpoint: str, bucket: str, expire: int = 300) -> dict:
    """STORAGES for tests in this process, as settings.py builds them from the environment."""
    from botocore.config import Config

    return {**settings.STORAGES, "default": {
        "BACKEND": "moderation.ops.storage.PrivateS3Storage",
        "OPTIONS": {"bucket_name": bucket, "endpoint_url": endpoint, "region_name": S3_REGION,
                    "access_key": S3_KEYS["AWS_ACCESS_KEY_ID"], "secret_key": S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                    "default_acl": None, "querystring_auth": True, "querystring_expire": expire,
                    "file_overwrite": True,
                    "client_config": Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                            retries={"max_attempts": 2, "mode": "standard"})},
    }}


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    """The same, as the environment a deployed process reads."""
    return {"AWS_STORAGE_BUCKET_NAME": bucket, "AWS_S3_ENDPOINT_URL": endpoint, "AWS_S3_REGION_NAME": S3_REGION,
            "AWS_S3_ADDRESSING_STYLE": "path", **S3_KEYS}


# --- Redis --------------------------------------------------------------------------


class RedisServer:
    """A private redis-server on a free port, stoppable and restartable."""

    def __init__(self, log_dir: Path):
        assert shutil.which("redis-server"), "redis-server is not installed (apt-get install redis-server)"
        self.port = free_port()
        self.log_dir = log_dir
        self.url = f"redis://127.0.0.1:{self.port}/8"
        self.process: Process | None = None
        self.start()

    def start(self) -> None:
        self.process = Process(f"redis-{self.port}", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                                      "--save", "", "--appendonly", "no"], _quiet_env(), self.log_dir)
        wait_until(self._pong, message="redis-server")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


# --- A line to PostgreSQL that can be cut -----------------------------------------------


class TcpProxy:
    """Forwards a loopback port to a target; `cut()` closes the listener and
    every open connection (as a stopped server would), `restore()` listens again."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            for conn in self._connections:
                _close(conn)
            self._connections.clear()
        if listener is not None:
            # close() alone does not wake a thread blocked in accept(): the socket
            # would go on listening and let one more (persistent) connection through.
            _close(listener)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while this one was being made
                    _close(client)
                    _close(upstream)
                    return
                self._connections.update({client, upstream})
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for conn in (source, sink):
                _close(conn)
                with self._lock:
                    self._connections.discard(conn)


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()


# --- Processes of the product -----------------------------------------------------------


def deployment_env(database_url: str, **extra) -> dict[str, str]:
    """The environment of a deployed process: production settings but demo
    mode (the simulator's keys), plain HTTP on loopback."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DJANGO_", "HIVE_", "Q_", "PYTEST", "AWS_", "PROMETHEUS_", "REDIS_", "DATABASE_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "hiveportal.settings",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "HIVE_SIMULATOR": "1",
        "ALLOW_PRIVATE_URLS": "1",
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "LOG_LEVEL": "WARNING",
        "GUNICORN_ACCESS_LOG": "0",
    })
    env.update({key: str(value) for key, value in extra.items()})
    return env


def start_web(name: str, env: dict[str, str], log_dir: Path, *, threads: int = 8) -> tuple[Process, str]:
    """One gunicorn (master + one worker process), configured by gunicorn.conf.py."""
    port = free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": str(threads)}
    process = Process(name, [sys.executable, "-m", "gunicorn", "hiveportal.wsgi"], env, log_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.popen.poll() is not None or _answers(f"{url}/healthz"), message=name)
    except AssertionError:
        process.stop()
        raise
    if process.popen.poll() is not None:
        process.stop()
        raise RuntimeError(f"{name} exited:\n{read_log(log_dir, name)}")
    return process, url


def start_worker(name: str, env: dict[str, str], log_dir: Path) -> Process:
    return Process(name, [sys.executable, "manage.py", "qcluster"], env, log_dir)


def stop_all(processes: list[Process], grace: float = 10) -> None:
    """SIGTERM to every main process at once, SIGKILL to what still runs after
    `grace` seconds (gunicorn waits for idle keep-alive connections, a django-q2
    cluster for its calls in flight: neither matters once a test is over)."""
    for process in processes:
        try:
            process.popen.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        process.stop(signal.SIGKILL if process.popen.poll() is None else signal.SIGTERM)


def read_log(log_dir: Path, name: str, tail: int = 4000) -> str:
    path = Path(log_dir) / f"{name}.log"
    return path.read_text(errors="replace")[-tail:] if path.exists() else ""


def _quiet_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "PYTEST"))}

