"""Run Django's own session tests (tests/sessions_tests of the installed Django release) against qsess.

Downloads the source distribution of the installed Django version with pip (cached), copies its
`tests/` folder into a temporary directory, adds `sessions_tests/test_qsess.py` with
`class QsessSessionTests(SessionTestsMixin, SimpleTestCase): backend = SessionStore` (the way Django
runs the mixin for its cache backend), and runs `runtests.py sessions_tests.test_qsess --parallel 1`
beside a fresh redis-server + module, PostgreSQL and qsess-syncd. Prints
`django-suite <version>: ran N, passed P, failed F, skipped S` and exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Stack

TEST_MODULE = '''"""Django's SessionTestsMixin against the qsess backend (added by run_django_suite.py)."""

from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import SimpleTestCase, override_settings

from qsess.django.backend import SessionStore

from . import tests as django_tests


class QsessSessionTests(django_tests.SessionTestsMixin, SimpleTestCase):
    backend = SessionStore


@override_settings(SESSION_ENGINE="qsess.django.backend")
class QsessSessionMiddlewareTests(django_tests.SessionMiddlewareTests):
    """Django's SessionMiddleware tests with qsess as the engine."""

    def test_empty_session_saved(self):
        # Django's version reads its database model (Session.objects.get) to check the emptied
        # session was written; the same steps and checks, reading the session back from qsess.
        def response_set_session(request):
            request.session["foo"] = "bar"
            return HttpResponse("Session test")

        request = self.request_factory.get("/")
        middleware = SessionMiddleware(response_set_session)
        response = middleware(request)
        self.assertEqual(tuple(request.session.items()), (("foo", "bar"),))
        self.assertIn("Set-Cookie: sessionid=%s" % request.session.session_key, str(response.cookies))
        self.assertEqual(response.headers["Vary"], "Cookie")
        del request.session["foo"]
        response = middleware.process_response(request, HttpResponse("Session test"))
        self.assertEqual(dict(request.session.values()), {})
        stored = SessionStore(request.session.session_key)
        self.assertIs(stored.exists(request.session.session_key), True)
        self.assertEqual(stored.load(), {})
        self.assertGreater(len(request.session.session_key), 8)
        self.assertIn("Set-Cookie: sessionid=%s" % request.session.session_key, str(response.cookies))
        self.assertEqual(response.headers["Vary"], "Cookie")
'''


def django_sdist(version: str, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    name = f"django-{version}.tar.gz"
    found = [p for p in cache.iterdir() if p.name.lower() == name]
    if found:
        return found[0]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"Django=={version}",
            "-d",
            str(cache),
        ],
        check=True,
    )
    return next(p for p in cache.iterdir() if p.name.lower() == name)


def extract_tests(sdist: Path, target: Path) -> Path:
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/tests/" in m.name]
        if sys.version_info >= (3, 12):
            archive.extractall(target, members=members, filter="data")
        else:
            archive.extractall(target, members=members)
    return next(target.glob("*/tests"))


def main() -> int:
    import django

    version = django.get_version()
    cache = Path(
        os.environ.get("QSESS_DJANGO_SDIST_CACHE", Path(tempfile.gettempdir()) / "qsess-django-sdist")
    )
    work = Path(tempfile.mkdtemp(prefix="qsess-django-suite-"))
    try:
        tests = extract_tests(django_sdist(version, cache), work)
        (tests / "sessions_tests" / "test_qsess.py").write_text(TEST_MODULE)
        with Stack() as stack:
            env = {**os.environ, "QSESS_REDIS_URL": stack.redis_url}
            result = subprocess.run(
                [
                    sys.executable,
                    "runtests.py",
                    "sessions_tests.test_qsess",
                    "--parallel",
                    "1",
                    "-v",
                    "2",
                ],
                cwd=tests,
                env=env,
                capture_output=True,
                text=True,
            )
        output = result.stdout + result.stderr
        ran = int(m.group(1)) if (m := re.search(r"Ran (\d+) tests?", output)) else 0
        failed = sum(int(n) for n in re.findall(r"(?:failures|errors)=(\d+)", output))
        skipped = int(m.group(1)) if (m := re.search(r"skipped=(\d+)", output)) else 0
        if result.returncode and not failed:
            failed = max(1, ran)
        passed = ran - failed - skipped
        if result.returncode or failed:
            sys.stdout.write(output[-20000:])
        else:
            for line in output.splitlines():
                if line.startswith("test_") and "..." in line and not line.endswith("ok"):
                    print(line)
        for cls in ("QsessSessionTests", "QsessSessionMiddlewareTests"):
            # "-v 2" prints "test (module.Class.test) ... ok", the docstring's first line before "..."
            lines = re.findall(
                rf"\(sessions_tests\.test_qsess\.{cls}\.\w+\)(?:\n[^\n]*?)? \.\.\. (\w+)", output
            )
            print(f"  {cls}: {len(lines)} run, {lines.count('ok')} ok")
        print(f"django-suite {version}: ran {ran}, passed {passed}, failed {failed}, skipped {skipped}")
        counts = os.environ.get("QSESS_COUNTS_FILE")
        if counts:
            with open(counts, "a") as out:
                out.write(
                    json.dumps(
                        {"suite": f"django {version}", "passed": passed, "failed": failed, "skipped": skipped}
                    )
                    + "\n"
                )
        return 1 if (result.returncode or failed or ran == 0) else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
