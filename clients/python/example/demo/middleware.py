"""Demo only: let the login form choose the address and browser a session appears to come from.

So one person at 127.0.0.1 can log in as several "devices" in several places and see locations
(from the module's test GeoIP database that run.sh loads). Never use this in a real site.
"""

import ipaddress

DEMO_IP = "demo_ip"
DEMO_UA = "demo_ua"


class DemoClientMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        chosen = {}
        if request.method == "POST" and request.path == "/login/":
            chosen = {name: request.POST.get(name, "") for name in (DEMO_IP, DEMO_UA)}
        ip = chosen.get(DEMO_IP) or request.COOKIES.get(DEMO_IP)
        ua = chosen.get(DEMO_UA) or request.COOKIES.get(DEMO_UA)
        try:
            if ip:
                request.META["REMOTE_ADDR"] = str(ipaddress.ip_address(ip))
        except ValueError:
            pass
        if ua:
            request.META["HTTP_USER_AGENT"] = ua
        response = self.get_response(request)
        for name, value in chosen.items():
            if value:
                response.set_cookie(name, value, httponly=True, samesite="Lax")
        return response
