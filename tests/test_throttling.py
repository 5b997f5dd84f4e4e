"""The per-partner throttle: exact under concurrency, sliding, and a
Retry-After after which the partner really gets through."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

from moderation.api import throttling
from moderation.api.throttling import PartnerRateThrottle
from moderation.ops.broker import shared_client


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def clock(monkeypatch):
    now = SimpleNamespace(t=1_800_000_000.0)  # the start of a minute
    monkeypatch.setattr(throttling.time, "time", lambda: now.t)
    return now


def throttle(rate: str, monkeypatch) -> type[PartnerRateThrottle]:
    monkeypatch.setattr(PartnerRateThrottle, "THROTTLE_RATES", {"partner": rate})
    return PartnerRateThrottle


def request(partner_pk: int = 1):
    return SimpleNamespace(auth=object(), user=SimpleNamespace(pk=partner_pk))


def test_requests_at_the_same_moment_are_all_counted(monkeypatch):
    cls = throttle("10/min", monkeypatch)
    start = threading.Barrier(40)
    allowed = []

    def one():
        start.wait()
        allowed.append(cls().allow_request(request(), None))

    threads = [threading.Thread(target=one) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 10


def test_each_partner_has_its_own_rate(monkeypatch, clock):
    cls = throttle("2/min", monkeypatch)
    assert [cls().allow_request(request(1), None) for _ in range(3)] == [True, True, False]
    assert cls().allow_request(request(2), None)


def test_the_window_slides_and_retry_after_is_when_there_is_room(monkeypatch, clock):
    cls = throttle("10/min", monkeypatch)
    clock.t += 50  # ten requests late in one minute
    assert all(cls().allow_request(request(), None) for _ in range(10))
    clock.t += 15  # 5 s into the next: most of the previous minute still counts
    refused = cls()
    assert not refused.allow_request(request(), None)
    wait = refused.wait()
    assert 1 <= wait <= 60
    clock.t += wait - 1
    assert not cls().allow_request(request(), None)
    clock.t += 1
    assert cls().allow_request(request(), None)


def test_refused_requests_take_no_room(monkeypatch, clock):
    cls = throttle("2/min", monkeypatch)
    assert [cls().allow_request(request(), None) for _ in range(5)] == [True, True, False, False, False]
    clock.t += 60 + 31  # half of the previous minute has slid out: one request's room
    assert [cls().allow_request(request(), None) for _ in range(2)] == [True, False]


def test_on_redis_each_window_counter_expires_and_is_read_by_the_cache_api(monkeypatch, clock):
    if not isinstance(caches["default"], RedisCache):
        pytest.skip("the one-round-trip counter is Redis's (this run's cache is not Redis)")
    cls = throttle("5/min", monkeypatch)
    assert all(cls().allow_request(request(), None) for _ in range(3))
    key = cache.make_and_validate_key(f"throttle:partner:1:{int(clock.t // 60)}")
    assert 60 < shared_client().ttl(key) <= 120  # gone once the next window no longer looks back at it
    assert cache.get(f"throttle:partner:1:{int(clock.t // 60)}") == 3
    clock.t += 60  # next window: the three still weigh on it, fully at its start
    assert [cls().allow_request(request(), None) for _ in range(3)] == [True, True, False]
