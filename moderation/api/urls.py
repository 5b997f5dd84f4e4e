from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from moderation.api import views, webhook_urls

app_name = "api"

urlpatterns = [
    path("projects/", views.ProjectList.as_view(), name="project-list"),
    path("projects/<slug:slug>/submissions/", views.SubmissionCreate.as_view(), name="submission-create"),
    path("submissions/", views.SubmissionList.as_view(), name="submission-list"),
    path("submissions/<uuid:pk>/", views.SubmissionDetail.as_view(), name="submission-detail"),
    path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[],
                                              throttle_classes=[]), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema", authentication_classes=[],
                                                 permission_classes=[], throttle_classes=[]), name="docs"),
    *webhook_urls.urlpatterns,
]
