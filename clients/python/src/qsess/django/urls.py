"""URLs of the "your devices" page (namespace `qsess`)."""

from django.urls import path

from . import views

app_name = "qsess"

urlpatterns = [
    path("", views.device_list, name="devices"),
    path("logout-others/", views.device_logout_others, name="logout-others"),
    path("<str:handle>/logout/", views.device_logout, name="logout-device"),
]
