"""Session middleware that hands the client's IP and user agent to the qsess SessionStore.

A drop-in replacement for `django.contrib.sessions.middleware.SessionMiddleware` (and for
django-qsessions' middleware). The IP is REMOTE_ADDR unless the request came through a proxy
you trust (`QSESS_TRUSTED_PROXIES`, a list of addresses or networks): then the forwarding header
(`QSESS_PROXY_HEADER`, default X-Forwarded-For) is read from the right, skipping trusted proxies,
because only the entries your own proxies appended can be believed; the left ones are whatever
the client sent.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware

DEFAULT_PROXY_HEADER = "HTTP_X_FORWARDED_FOR"


def _networks() -> list:
    configured = getattr(settings, "QSESS_TRUSTED_PROXIES", None) or ()
    return [ipaddress.ip_network(entry, strict=False) for entry in configured]


def _trusted(address: str, networks: list) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def client_ip(request) -> str | None:
    """The client's address for this request, following only trusted proxies."""
    remote = request.META.get("REMOTE_ADDR") or None
    networks = _networks()
    if remote is None or not networks or not _trusted(remote, networks):
        return remote
    header = getattr(settings, "QSESS_PROXY_HEADER", None) or DEFAULT_PROXY_HEADER
    forwarded = [part.strip() for part in request.META.get(header, "").split(",") if part.strip()]
    for address in reversed(forwarded):
        if not _trusted(address, networks):
            return address
    # Every hop is a trusted proxy: the leftmost one is the closest we know to the client.
    return forwarded[0] if forwarded else remote


class QsessSessionMiddleware(SessionMiddleware):
    """SessionMiddleware whose SessionStore learns the request's IP and user agent."""

    def process_request(self, request) -> None:
        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        request.session = self.SessionStore(
            session_key,
            user_agent=request.META.get("HTTP_USER_AGENT") or None,
            ip=client_ip(request),
        )


# The name django-qsessions uses, so switching is a settings change only.
SessionMiddleware = QsessSessionMiddleware
