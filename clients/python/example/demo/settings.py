"""Settings of the example project: sessions in qsess, the mirror in PostgreSQL, everything else in SQLite.

QSESS_REDIS_URL and QSESS_DATABASE_URL default to what `scripts/run` starts (Redis on 6380, the
mirror database `qsess` on 6381).
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "qsess-example-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "qsess.django",  # the mirror models, their admin and `manage.py qsess_import`
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "demo.middleware.DemoClientMiddleware",  # demo only: pretend to come from elsewhere
    "qsess.django.middleware.QsessSessionMiddleware",  # instead of Django's SessionMiddleware
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

SESSION_ENGINE = "qsess.django.backend"
QSESS_REDIS_URL = "redis://127.0.0.1:6380/0"  # the environment variable QSESS_REDIS_URL wins
QSESS_DATABASE = "qsess"
QSESS_TRUSTED_PROXIES = []  # e.g. ["10.0.0.0/8"] behind your load balancer


def _postgres(url: str) -> dict:
    parts = urlparse(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/") or "qsess",
        "USER": unquote(parts.username or "postgres"),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
    }


DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"},
    "qsess": _postgres(os.environ.get("QSESS_DATABASE_URL", "postgres://postgres@127.0.0.1:6381/qsess")),
}

ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"
TEMPLATES = [
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
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "qsess:devices"
LOGOUT_REDIRECT_URL = "login"
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
