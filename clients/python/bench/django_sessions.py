"""Benchmark through Django's SessionStore API: qsess vs Django `cached_db` vs django-qsessions `cached_db`.

All three run against the same redis-server (with the qsess module loaded; the two cached_db stores
use it as a plain cache through Django's own `RedisCache`) and the same PostgreSQL, started here on
free loopback ports together with qsess-syncd, as in production. Operations:

- create a logged-in session (`store["_auth_user_id"] = ...; store.save()`),
- load a session (`SessionStore(key)` then a read), with redis-py's pure-Python parser (its default
  when hiredis is not installed) and with hiredis,
- log out everywhere a user with 10 sessions (qsess: `devices.logout_everywhere`; django-qsessions:
  `Session.objects.filter(user=...).delete()`; Django has no per-user index),
- list a user's 10 sessions (qsess: `devices.list_devices`; django-qsessions: the user's live rows).

Each measurement runs in several rounds with the backends in alternating order; the median is kept.
Usage (with the `bench` extra installed: pip install -e "clients/python[django,bench]"):
    QSESS_MODULE_PATH=.../libqsess.so QSESS_SYNCD_PATH=.../qsess-syncd \
    python bench/django_sessions.py RESULTS.md [--quick]
"""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import Stack

PURE = "redis._parsers._RESP2Parser"  # redis-py turns it into _RESP3Parser on RESP3 connections
HIREDIS = "redis._parsers._HiredisParser"
UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
IP = "198.51.100.23"
LOGIN_USERS = 2_000  # users the create benchmark logs in, in turn
TARGETS = {  # operation: (baseline, minimum ratio of qsess to it)
    "create": ("qsessions", 5.0),
    "load (pure-Python parser)": ("django", 1.0),
    "load (hiredis)": ("django", 1.0),
    "log out everywhere (10 sessions)": ("qsessions", 4.0),
    "list a user's sessions (10)": ("qsessions", 1.0),
}


def configure(stack: Stack) -> None:
    import django
    from django.conf import settings

    os.environ["QSESS_REDIS_URL"] = stack.redis_url
    cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": stack.redis_url}
    settings.configure(
        SECRET_KEY="bench",
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "qsessions",
            "qsess.django",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "postgres",
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": str(stack.pg_port),
                "CONN_MAX_AGE": None,
            }
        },
        CACHES={
            "default": {**cache, "OPTIONS": {"parser_class": HIREDIS}},
            "pure": {**cache, "OPTIONS": {"parser_class": PURE}},
        },
        SESSION_ENGINE="qsessions.backends.cached_db",  # what django-qsessions' queryset delete uses
        SESSION_CACHE_ALIAS="default",
        QSESS_REDIS_OPTIONS={"parser_class": _import(HIREDIS)},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _import(path: str):
    from importlib import import_module

    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def use_parser(path: str) -> None:
    from django.conf import settings

    settings.SESSION_CACHE_ALIAS = "pure" if path == PURE else "default"
    settings.QSESS_REDIS_OPTIONS = {"parser_class": _import(path)}


def stores():
    from django.contrib.sessions.backends.cached_db import SessionStore as DjangoStore
    from qsessions.backends.cached_db import SessionStore as QsessionsStore

    from qsess.django.backend import SessionStore as QsessStore

    return {
        "django": lambda key=None: DjangoStore(key),
        "qsessions": lambda key=None: QsessionsStore(key, user_agent=UA, ip=IP),
        "qsess": lambda key=None: QsessStore(key, user_agent=UA, ip=IP),
    }


def login_data(user_id: int) -> dict:
    return {
        "_auth_user_id": str(user_id),
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": "f" * 64,
        "cart": {"items": [101, 202], "currency": "EUR"},
    }


def create(make, user_id: int):
    store = make()
    for key, value in login_data(user_id).items():
        store[key] = value
    store.save()
    return store.session_key


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def measure(rounds: int, sizes: dict) -> dict:
    from django.contrib.auth import get_user_model
    from qsessions.models import Session as QsessionsSession

    from qsess.django import devices

    makers = stores()
    users = get_user_model()
    user = users.objects.create_user("bench-user")
    # Logins spread over many users, as on a real site: qsess caps one user's live sessions
    # (qsess.max-sessions-per-user, 500), and every create here is a new logged-in session.
    users.objects.bulk_create(users(username=f"bench-login-{n}") for n in range(LOGIN_USERS))
    login_user_ids = itertools.cycle(
        users.objects.filter(username__startswith="bench-login-").values_list("pk", flat=True)
    )
    results: dict[str, dict[str, list[float]]] = {op: {} for op in TARGETS}
    order = list(makers)
    for round_no in range(rounds):
        names = order if round_no % 2 == 0 else order[::-1]
        use_parser(HIREDIS)
        for name in names:
            make = makers[name]
            create(make, next(login_user_ids))  # warm connections
            ops = rate(lambda make=make: create(make, next(login_user_ids)), sizes["create"])
            results["create"].setdefault(name, []).append(ops)
        for label, parser in (("load (pure-Python parser)", PURE), ("load (hiredis)", HIREDIS)):
            use_parser(parser)
            for name in names:
                make = makers[name]
                key = create(make, user.pk)
                make(key).load()  # warm (and let qsessions record its IP/UA)

                def load(make=make, key=key):
                    store = make(key)
                    assert store["_auth_user_id"]

                results[label].setdefault(name, []).append(rate(load, sizes["load"]))
        use_parser(HIREDIS)
        for name in ("qsessions", "qsess") if round_no % 2 == 0 else ("qsess", "qsessions"):
            make = makers[name]
            target = users.objects.create_user(f"bench-{name}-{round_no}")
            spent = 0.0
            for _ in range(sizes["logout"]):
                for _ in range(10):
                    create(make, target.pk)
                start = time.perf_counter()
                if name == "qsess":
                    ended = devices.logout_everywhere(target)
                else:
                    ended = QsessionsSession.objects.filter(user=target).delete()[0]
                spent += time.perf_counter() - start
                assert ended == 10, (name, ended)
            results["log out everywhere (10 sessions)"].setdefault(name, []).append(sizes["logout"] / spent)
            for _ in range(10):
                create(make, target.pk)
            if name == "qsess":

                def listing(target=target):
                    assert len(devices.list_devices(target)) == 10

            else:

                def listing(target=target):
                    from django.utils import timezone

                    found = list(QsessionsSession.objects.filter(user=target, expire_date__gt=timezone.now()))
                    assert len(found) == 10

            results["list a user's sessions (10)"].setdefault(name, []).append(rate(listing, sizes["list"]))
    return {op: {name: statistics.median(v) for name, v in by.items()} for op, by in results.items()}


def markdown(medians: dict, rounds: int, stack: Stack, versions: dict) -> str:
    lines = [
        "# qsess Django backend vs Django cached_db vs django-qsessions cached_db",
        "",
        "Operations per second through the `SessionStore` API, one client thread, median of "
        f"{rounds} rounds with alternating order; same redis-server (module loaded, {versions['protocol']}) "
        "and PostgreSQL, qsess-syncd mirroring meanwhile.",
        "",
        "| operation | Django cached_db | django-qsessions cached_db | qsess "
        "| qsess / baseline | target | met |",
        "|---|---:|---:|---:|---:|---:|:---:|",
    ]
    all_met = True
    for op, (baseline, minimum) in TARGETS.items():
        row = medians[op]
        ratio = row["qsess"] / row[baseline]
        met = ratio >= minimum
        all_met &= met
        cells = [f"{row[n]:,.0f}" if n in row else "n/a" for n in ("django", "qsessions", "qsess")]
        base = "Django" if baseline == "django" else "django-qsessions"
        verdict = "yes" if met else "NO"
        lines.append(f"| {op} | {' | '.join(cells)} | {ratio:.2f}× {base} | ≥ {minimum:g}× | {verdict} |")
    lines += [
        "",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("protocol", "load before"))
        + ".",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {versions['load before']} before and {os.getloadavg()[0]:.1f} after the run.",
        f"Module: `{stack.module}`.",
        "",
        "All targets met." if all_met else "Some targets were NOT met.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 2
    from importlib.util import find_spec

    missing = [name for name in ("hiredis", "qsessions") if find_spec(name) is None]
    if missing:
        print(f"{', '.join(missing)} missing: pip install -e 'clients/python[django,bench]'", file=sys.stderr)
        return 2
    quick = "--quick" in argv
    # Many short rounds rather than a few long ones: on a shared machine a burst of other work
    # then spoils a few samples, not a whole measurement, and the median drops them.
    rounds = 1 if quick else 9
    sizes = (
        {"create": 100, "load": 500, "logout": 10, "list": 100}
        if quick
        else {"create": 200, "load": 1500, "logout": 30, "list": 400}
    )
    with Stack() as stack:
        configure(stack)
        import django
        import qsessions
        import redis

        from qsess.django import conf

        resp = b"resp=3" in conf.client().redis.execute_command("CLIENT", "INFO")
        versions = {
            "protocol": "RESP3" if resp else "RESP2",
            "load before": f"{os.getloadavg()[0]:.1f}",
            "Django": django.get_version(),
            "django-qsessions": getattr(qsessions, "__version__", "2.1.0"),
            "redis-py": redis.__version__,
        }
        medians = measure(rounds, sizes)
        report = markdown(medians, rounds, stack, versions)
    Path(argv[0]).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
