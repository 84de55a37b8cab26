"""Pytest setup: one real stack (redis-server + module, PostgreSQL, qsess-syncd) and a Django site over it.

Django is configured here rather than by pytest-django so the same tests run unchanged on Django 4.2
and 5.2: `default` is SQLite (users, admin, the source tables of the importer) and `qsess` is the
PostgreSQL database qsess-syncd mirrors into.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Stack

STACK: Stack | None = None
GEOIP_FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "geoip" / "qsess-test-city.mmdb"


def pytest_configure(config) -> None:
    global STACK
    STACK = Stack().start()
    os.environ["QSESS_REDIS_URL"] = STACK.redis_url
    if GEOIP_FIXTURE.exists():
        # The module's own made-up City database: 203.0.113.0/24 is "Tehran, Iran".
        import redis

        redis.Redis.from_url(STACK.redis_url).config_set("qsess.geoip-db", str(GEOIP_FIXTURE))
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="qsess-tests-secret",
        SECRET_KEY_FALLBACKS=["qsess-tests-old-secret"],
        USE_TZ=True,
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="urls",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "qsess.django",
        ],
        MIDDLEWARE=[
            "qsess.django.middleware.QsessSessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        SESSION_ENGINE="qsess.django.backend",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(STACK.dir / "default.sqlite3"),
            },
            "qsess": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "postgres",
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": str(STACK.pg_port),
            },
        },
        QSESS_DATABASE="qsess",
        QSESS_TRUSTED_PROXIES=["10.0.0.0/8"],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", database="default", verbosity=0)


def pytest_unconfigure(config) -> None:
    if STACK is not None:
        STACK.stop()


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None and STACK is not None and call.when == "call":
        syncd_log = STACK.dir / "syncd.log"
        if syncd_log.exists():
            sys.stderr.write(syncd_log.read_text(errors="replace")[-2000:])


@pytest.fixture
def stack() -> Stack:
    assert STACK is not None
    return STACK


def wait_for(check, timeout: float = 5.0):
    """Poll `check` until it returns something truthy: the mirror lags Redis by milliseconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)
