"""URLconf of the test site: the admin, the devices page and a view that shows the session."""

from django.contrib import admin
from django.contrib.auth import authenticate, login
from django.http import HttpResponse, JsonResponse
from django.urls import include, path


def whoami(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JsonResponse({"key": request.session.session_key, "visits": request.session["visits"]})


def do_login(request):
    user = authenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponse("no", status=403)
    login(request, user)
    return HttpResponse("ok")


urlpatterns = [
    path("login/", do_login),
    path("admin/", admin.site.urls),
    path("devices/", include("qsess.django.urls")),
    path("whoami/", whoami),
]
