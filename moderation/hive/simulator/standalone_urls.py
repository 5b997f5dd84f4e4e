"""URLconf of the standalone simulator (`run_hive_simulator`, `server.start_simulator`).

The same routes twice: at the root, so `HIVE_API_URL=http://127.0.0.1:N` works like
Hive's own base URL, and under `simulator/`, so a base URL copied from the mounted
simulator (`.../simulator`) works too.
"""

from django.urls import include, path

urlpatterns = [
    path("", include("moderation.hive.simulator.urls", namespace="simulator-root")),
    path("simulator/", include("moderation.hive.simulator.urls", namespace="simulator")),
]
