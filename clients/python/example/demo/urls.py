"""URLs of the example: login/logout, the devices page from qsess.django.urls, the admin."""

from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.urls import include, path
from django.views.generic import RedirectView

from .views import DemoLoginView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="qsess:devices")),
    path("login/", DemoLoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("devices/", include("qsess.django.urls")),
    path("admin/", admin.site.urls),
]
