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

if settings.HIVE_SIMULATOR:
    urlpatterns.append(path("simulator/", include("moderation.hive.simulator.urls")))
