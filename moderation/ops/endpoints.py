"""/healthz, /readyz and /metrics, answered by a middleware near the top of
the stack.

Why a middleware and not URLs: load balancers and Prometheus address each
process by IP and port, so their Host header is not in ALLOWED_HOSTS and
Django would answer 400 before any view ran; and probes must not be redirected
to HTTPS. These three paths reveal nothing host-dependent, so they are answered
before host validation. /metrics needs `Authorization: Bearer $METRICS_TOKEN`
(without a token it is off, except in demo mode from loopback).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from moderation.metrics import PipelineCollector
from moderation.ops import metrics_files
from moderation.ops.health import readiness

logger = logging.getLogger("moderation.ops")

_LOOPBACK = {"127.0.0.1", "::1"}


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Touches nothing else, so a database
    outage never makes an orchestrator restart healthy web processes."""
    return _no_store(JsonResponse({"status": "ok"}))


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 when database, broker and storage are reachable; else
    503 naming what is down."""
    checks = readiness()
    down = [check.component for check in checks if not check.ok]
    body = {"status": "unavailable" if down else "ready", "down": down,
            "checks": {check.component: check.state for check in checks}}
    response = JsonResponse(body, status=503 if down else 200)
    if down:
        logger.warning("not ready: %s", ", ".join(f"{c.component} ({c.detail})" for c in checks if not c.ok),
                       extra={"down": down})
        response._has_been_logged = True  # our line says more than Django's "Service Unavailable"
    return _no_store(response)


def metrics(request: HttpRequest) -> HttpResponse:
    refused = _refuse_metrics(request)
    if refused is not None:
        return refused
    output = _events() + generate_latest(_PIPELINE)
    return _no_store(HttpResponse(output, content_type=CONTENT_TYPE_LATEST))


_PIPELINE = CollectorRegistry(auto_describe=False)
_PIPELINE.register(PipelineCollector())


def _events() -> bytes:
    """This process's counters, or every process's on this host in
    multiprocess mode (PROMETHEUS_MULTIPROC_DIR), exited ones folded first."""
    path = metrics_files.multiproc_dir()
    if path is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)
    try:
        metrics_files.compact(path)
        with metrics_files.reading(path):
            return generate_latest(registry)
    except OSError:  # the scrape still answers, from every file
        logger.warning("could not compact the metrics directory", exc_info=True)
        return generate_latest(registry)


def _refuse_metrics(request: HttpRequest) -> HttpResponse | None:
    token = settings.METRICS_TOKEN
    if token:
        if constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {token}"):
            return None
        response = JsonResponse({"detail": "Send Authorization: Bearer <METRICS_TOKEN>."}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    direct = request.META.get("REMOTE_ADDR") in _LOOPBACK and "HTTP_X_FORWARDED_FOR" not in request.META
    if settings.DEMO_MODE and direct:
        return None
    return JsonResponse({"detail": "Metrics are off: set METRICS_TOKEN to enable them."}, status=404)


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


ENDPOINTS = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


class OpsEndpointsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = ENDPOINTS.get(request.path_info.rstrip("/"))
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = JsonResponse({"detail": "Use GET."}, status=405)
            response["Allow"] = "GET, HEAD"
            return response
        return view(request)
