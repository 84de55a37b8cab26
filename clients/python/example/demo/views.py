"""The example's own pages: a login form with a "pretend to be" choice, and a home page."""

from django.contrib.auth.views import LoginView

PLACES = [
    ("203.0.113.7", "Tehran (203.0.113.7)"),
    ("198.51.100.200", "Linköping (198.51.100.200)"),
    ("2001:db8:1::1", "Berlin (2001:db8:1::1)"),
    ("2001:db8:3:8000::1", "Paris (2001:db8:3:8000::1)"),
    ("127.0.0.1", "here (127.0.0.1, no location)"),
]
BROWSERS = [
    ("", "this browser"),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Safari on iPhone",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36",
        "Chrome on Android",
    ),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "Firefox on Linux"),
]


class DemoLoginView(LoginView):
    template_name = "registration/login.html"
    extra_context = {"places": PLACES, "browsers": BROWSERS}
