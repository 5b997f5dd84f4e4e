"""django-q2's Redis broker with one Redis client per process.

django-q2 builds a broker for every `async_task()` that is not handed one, and its
Redis broker builds a new client (a new connection pool) each time: every enqueue
opened a TCP connection to Redis (connect, HELLO, CLIENT SETINFO) and dropped it,
in the request of every partner submission and every Hive callback, about 1 ms
each (bench/intake_bench.py, bench/callbacks_bench.py). This broker keeps one
client per process: redis-py's pool is thread-safe and starts afresh in a forked
child; the pid check keeps a child from even sharing the client object.
The API throttle uses the same client (`shared_client`).
"""

from __future__ import annotations

import os
import threading

import redis
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf

_lock = threading.Lock()
_client: tuple[int, redis.Redis] | None = None


def shared_client() -> redis.Redis:
    """This process's client for the Redis of REDIS_URL (django-q2's `redis` setting)."""
    global _client
    current = _client
    if current is None or current[0] != os.getpid():
        with _lock:
            current = _client
            if current is None or current[0] != os.getpid():
                client = (redis.from_url(Conf.REDIS) if isinstance(Conf.REDIS, str)
                          else redis.StrictRedis(**Conf.REDIS))
                current = _client = (os.getpid(), client)
    return current[1]


class SharedRedis(Redis):
    @staticmethod
    def get_connection(list_key: str | None = None) -> redis.Redis:
        return shared_client()
