"""Partner webhook endpoints API, included by moderation/api/urls.py (paths under /api/v1/)."""

from django.urls import path

from moderation.api import webhook_views as views

urlpatterns = [
    path("webhooks/", views.EndpointList.as_view(), name="webhook-list"),
    path("webhooks/<uuid:pk>/", views.EndpointDetail.as_view(), name="webhook-detail"),
    path("webhooks/<uuid:pk>/rotate-secret/", views.RotateSecret.as_view(), name="webhook-rotate-secret"),
    path("webhooks/<uuid:pk>/deliveries/", views.DeliveryList.as_view(), name="webhook-deliveries"),
    path("webhooks/<uuid:pk>/deliveries/<int:delivery_id>/redeliver/", views.Redeliver.as_view(),
         name="webhook-redeliver"),
]
