"""Partner webhook endpoints API, included by moderation/api/urls.py."""

urlpatterns: list = []
