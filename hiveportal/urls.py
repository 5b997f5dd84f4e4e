from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from moderation.callback_views import hive_callback

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("moderation.api.urls")),
    path("portal/", include("moderation.portal.urls")),
    path("hive/callback/<str:submission_id>/<str:token>/", hive_callback, name="hive-callback"),
]

# Unrouted paths under /api/ answer JSON, not Django's HTML page.
handler404 = "moderation.api.exceptions.page_not_found"
handler500 = "moderation.api.exceptions.server_error"

if settings.HIVE_SIMULATOR:
    urlpatterns.append(path("simulator/", include("moderation.hive.simulator.urls")))
