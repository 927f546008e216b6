"""Dashboard pages (server-rendered). Each area adds its pages here."""

from django.urls import path

from accounts import views as accounts_views

urlpatterns = [
    path("", accounts_views.home, name="home"),
    path("login/", accounts_views.login_view, name="login"),
    path("logout/", accounts_views.logout_view, name="logout"),
    path("organization/switch/", accounts_views.organization_switch, name="organization-switch"),
]
