"""A ready-made "your devices" page: list the signed-in user's sessions, log out one, log out the others.

Include `path("account/devices/", include("qsess.django.urls"))`; the template `qsess/devices.html`
can be overridden like any other.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from . import devices


@login_required
@require_http_methods(["GET", "HEAD"])
def device_list(request: HttpRequest) -> HttpResponse:
    found = devices.list_devices(request.user, request.session.session_key)
    return render(request, "qsess/devices.html", {"devices": found})


@login_required
@require_POST
def device_logout(request: HttpRequest, handle: str) -> HttpResponse:
    if devices.logout_device(request.user, handle):
        messages.success(request, "That device was logged out.")
    return redirect("qsess:devices")


@login_required
@require_POST
def device_logout_others(request: HttpRequest) -> HttpResponse:
    ended = devices.logout_other_devices(request.user, request.session.session_key)
    messages.success(request, f"Logged out {ended} other device(s).")
    return redirect("qsess:devices")
