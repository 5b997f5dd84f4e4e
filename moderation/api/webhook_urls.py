"""Partner webhook endpoints API, included by moderation/api/urls.py (paths under /api/v1/)."""

from moderation.api import webhook_views as views
from moderation.api.routes import api_path

urlpatterns = [
    api_path("webhooks/", views.EndpointList.as_view(), name="webhook-list"),
    api_path("webhooks/<anyuuid:pk>/", views.EndpointDetail.as_view(), name="webhook-detail"),
    api_path("webhooks/<anyuuid:pk>/rotate-secret/", views.RotateSecret.as_view(), name="webhook-rotate-secret"),
    api_path("webhooks/<anyuuid:pk>/deliveries/", views.DeliveryList.as_view(), name="webhook-deliveries"),
    api_path("webhooks/<anyuuid:pk>/deliveries/<int:delivery_id>/redeliver/", views.Redeliver.as_view(),
             name="webhook-redeliver"),
]
