from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("moderation.api.urls")),
]

if settings.HIVE_SIMULATOR:
    urlpatterns.append(path("simulator/", include("moderation.hive.simulator.urls")))
