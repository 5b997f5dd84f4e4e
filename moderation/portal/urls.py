from django.contrib.auth import views as auth_views
from django.urls import path

from moderation.portal import media, views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="portal/login.html",
                                                redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="portal:login"), name="logout"),
    path("queue/<slug:name>/", views.queue, name="queue"),
    path("search/", views.search, name="search"),
    path("start/", views.start, name="start"),
    path("grid/", views.grid, name="grid"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("preferences/", views.preferences, name="preferences"),
    path("item/<uuid:pk>/", views.item, name="item"),
    path("item/<uuid:pk>/media/", media.media, name="media"),
    path("item/<uuid:pk>/decide/", views.decide, name="decide"),
    path("item/<uuid:pk>/skip/", views.skip, name="skip"),
    path("item/<uuid:pk>/claim/", views.claim, name="claim"),
    path("item/<uuid:pk>/release/", views.release, name="release"),
    path("item/<uuid:pk>/assign/", views.assign, name="assign"),
    path("item/<uuid:pk>/presence/", views.presence, name="presence"),
]
