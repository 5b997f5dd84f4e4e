"""Settings for the HTTP benchmarks: the product's settings, plus the bare
comparison views of bench/urls.py (never part of the product's URLs)."""

from hiveportal.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls"
