"""The simulator's routes, relative to wherever it is mounted (`/simulator/` in demo mode)."""

from django.urls import path

from . import views

app_name = "simulator"
urlpatterns = [
    path("api/v2/task/sync", views.task_sync, name="task-sync"),
    path("api/v2/task/async", views.task_async, name="task-async"),
    path("control", views.control, name="control"),
    path("stats", views.stats, name="stats"),
]
