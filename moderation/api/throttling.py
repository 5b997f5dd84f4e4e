"""Per-partner throttle: a sliding-window counter in Django's cache (Redis in
production, so the rate holds across every web process).

DRF's SimpleRateThrottle keeps the time of every request of the window in one
cache value, read and written back whole by each request: at 6,000/min that is
a 50 KB list per request, and two processes writing it at once lose each
other's requests. Here each window is one counter, increased atomically (Redis
INCR), and the rate is estimated over a sliding window from this window's count
and the previous window's, weighted by how much of it still overlaps (the
estimate Cloudflare describes for its rate limiting). Refused requests are not
counted, like DRF's.

On Redis the count takes one round trip (a pipeline of SET NX, INCR and GET);
through Django's cache API it took four (its incr is EXISTS then INCR).
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from moderation.ops.broker import shared_client

DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
logger = logging.getLogger("moderation.api")


def parse_rate(rate: str) -> tuple[int, int]:
    """'6000/min' -> (6000, 60): the number of requests and the window in seconds."""
    count, period = rate.split("/")
    return int(count), DURATIONS[period[0]]


class PartnerRateThrottle(BaseThrottle):
    scope = "partner"
    THROTTLE_RATES: dict[str, str] | None = None  # None: REST_FRAMEWORK's DEFAULT_THROTTLE_RATES

    def __init__(self):
        rates = self.THROTTLE_RATES or api_settings.DEFAULT_THROTTLE_RATES
        self.limit, self.window = parse_rate(rates[self.scope])
        self.retry_after: float | None = None

    def allow_request(self, request, view) -> bool:
        if request.auth is None:
            return True  # unauthenticated requests are refused before throttling matters
        now = time.time()
        window, into = divmod(now, self.window)
        key = f"throttle:{self.scope}:{request.user.pk}:{int(window)}"
        try:
            count, previous = self._count(key, f"throttle:{self.scope}:{request.user.pk}:{int(window) - 1}")
        except (RedisError, OSError):
            # The throttle protects the portal; with its counter unreachable the
            # request goes on (intake stores the row, and a task the broker could
            # not take is queued by the sweep), rather than every call failing.
            logger.warning("throttle counter unavailable; request allowed", exc_info=True)
            return True
        overlap = 1 - into / self.window
        if previous * overlap + count <= self.limit:
            return True
        cache.decr(key)  # a refused request takes no room
        self.retry_after = self._seconds_until_room(count, previous, into)
        return False

    def _count(self, key: str, previous_key: str) -> tuple[int, int]:
        """This window's count, this request included, and the previous window's."""
        if settings.REDIS_URL and isinstance(caches["default"], RedisCache):
            # shared_client() is the cache's Redis: settings use one REDIS_URL for both.
            # Stored as Django's cache stores an int (plain digits), so cache.get and
            # cache.decr read these keys, and cache.clear() empties them.
            pipe = shared_client().pipeline(transaction=False)
            pipe.set(cache.make_and_validate_key(key), 0, ex=self.window * 2, nx=True)
            pipe.incr(cache.make_and_validate_key(key))
            pipe.get(cache.make_and_validate_key(previous_key))
            _, count, previous = pipe.execute()
            return count, int(previous or 0)
        return self._incr(key), cache.get(previous_key, 0)

    def _incr(self, key: str) -> int:
        try:
            return cache.incr(key)
        except ValueError:  # the window's first request (or its counter expired)
            if cache.add(key, 1, timeout=self.window * 2):
                return 1
            return cache.incr(key)

    def _seconds_until_room(self, count: int, previous: int, into: float) -> float:
        """When one more request fits: once this window's count alone is at
        the limit, in the next window; otherwise when enough of the previous
        window has slid out."""
        room = self.limit - (count - 1)  # this request was not counted
        if room <= 0:  # next window, once enough of this one has slid out
            return self.window - into + max(0.0, 1 - (self.limit - 1) / (count - 1)) * self.window
        if previous == 0:
            return self.window - into
        needed_overlap = min(1.0, (room - 1) / previous)  # previous * overlap + count <= limit
        return max(0.0, (1 - needed_overlap) * self.window - into)

    def wait(self) -> float | None:
        return None if self.retry_after is None else max(1, math.ceil(self.retry_after))
