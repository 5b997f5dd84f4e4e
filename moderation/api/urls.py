from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from moderation.api import views, webhook_urls
from moderation.api.routes import api_path

app_name = "api"

# api_path: each route answers with or without its trailing slash, and ids in any case
# (`anyuuid`): see moderation/api/routes.py.
urlpatterns = [
    api_path("projects/", views.ProjectList.as_view(), name="project-list"),
    api_path("projects/<slug:slug>/submissions/", views.SubmissionCreate.as_view(), name="submission-create"),
    api_path("submissions/", views.SubmissionList.as_view(), name="submission-list"),
    api_path("submissions/<anyuuid:pk>/", views.SubmissionDetail.as_view(), name="submission-detail"),
    api_path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[],
                                                  throttle_classes=[]), name="schema"),
    api_path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema", authentication_classes=[],
                                                     permission_classes=[], throttle_classes=[]), name="docs"),
    *webhook_urls.urlpatterns,
]
