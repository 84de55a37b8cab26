"""`manage.py qsess_import`: copy sessions into qsess from Django, django-qsessions or django-user-sessions.

Each live row is decoded with the site's SECRET_KEY (and SECRET_KEY_FALLBACKS), and written with
`QSESS.SET sid NX` keeping its remaining lifetime, owner, IP and user agent. NX makes a re-run
import nothing twice, and a session logged out since its import is refused by its tombstone, so
re-running never resurrects one. Rows are read in key order in batches, and `--after KEY` resumes
an interrupted run where its progress line stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.utils import timezone

from ... import conf
from ...backend import AUTH_USER_KEY, SessionStore, normalize_ip, truncate_user_agent

# Source table layouts: (table, has user column, has ip column, has user agent column).
SOURCES = {
    "django": ("django_session", False, False, False),
    "qsessions": ("qsessions_session", True, True, True),
    "user_sessions": ("user_sessions_session", True, True, True),
}
# django-qsessions also copies IP and user agent into the session dict; qsess keeps them in the record.
_QSESSIONS_KEYS = ("_qsessions_ip", "_qsessions_user_agent")


@dataclass
class Summary:
    read: int = 0
    imported: int = 0
    already_present: int = 0
    revoked: int = 0
    expired: int = 0
    empty_or_undecodable: int = 0
    refused: int = 0
    errors: list = field(default_factory=list)
    last_key: str | None = None


class Command(BaseCommand):
    help = "Import existing Django sessions into qsess (idempotent and resumable)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--source", choices=sorted(SOURCES), default="django")
        parser.add_argument("--table", help="source table name, if not the app's default")
        parser.add_argument("--database", default="default", help="alias of the source database")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--after", help="resume after this session key")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        table, has_user, has_ip, has_ua = SOURCES[options["source"]]
        table = options["table"] or table
        connection = connections[options["database"]]
        summary = Summary()
        after = options["after"] or ""
        quoted = connection.ops.quote_name(table)
        columns = ["session_key", "session_data", "expire_date"]
        columns += ["user_id"] if has_user else []
        columns += ["ip"] if has_ip else []
        columns += ["user_agent"] if has_ua else []
        with connection.cursor() as cursor:
            cursor.execute(f"select count(*) from {quoted} where session_key > %s", [after])
            total = cursor.fetchone()[0]
        progress = not options["no_progress"]
        while True:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"select {', '.join(columns)} from {quoted} "
                    "where session_key > %s order by session_key limit %s",
                    [after, options["batch_size"]],
                )
                rows = cursor.fetchall()
            if not rows:
                break
            self._import_batch(rows, columns, summary)
            after = rows[-1][0]
            summary.last_key = after
            if progress:
                self._progress(summary, total)
        if progress:
            self.stderr.write("")
        self._report(summary)
        if summary.errors:
            raise CommandError(f"{len(summary.errors)} session(s) could not be imported")

    def _import_batch(self, rows: list, columns: list, summary: Summary) -> None:
        # Every Django session backend signs with the salt "django.contrib.sessions.SessionStore",
        # and so does ours (same class name): its decode reads all three sources.
        codec = SessionStore()
        now = timezone.now()
        pending: list[tuple[str, list]] = []
        for row in rows:
            summary.read += 1
            record = dict(zip(columns, row))
            expire = record["expire_date"]
            if timezone.is_naive(expire) and timezone.is_aware(now):
                expire = timezone.make_aware(expire, dt_timezone.utc)
            remaining_ms = int((expire - now) / timedelta(milliseconds=1))
            if remaining_ms <= 0:
                summary.expired += 1
                continue
            data = codec.decode(record["session_data"])
            if not data:
                summary.empty_or_undecodable += 1
                continue
            ip = record.get("ip") or data.get("_qsessions_ip")
            ua = record.get("user_agent") or data.get("_qsessions_user_agent")
            for key in _QSESSIONS_KEYS:
                data.pop(key, None)
            user = record.get("user_id") or data.get(AUTH_USER_KEY)
            args: list = ["QSESS.SET", record["session_key"], "DATA", codec._dump(data)]
            args += ["USER", str(user)] if user is not None else ["ANON"]
            if normalize_ip(ip):
                args += ["IP", normalize_ip(ip)]
            if truncate_user_agent(ua):
                args += ["UA", truncate_user_agent(ua)]
            # The remaining lifetime as both timeouts: the session ends when it would have,
            # whatever it is read in between; its next save applies the site's own expiry.
            args += ["IDLE", remaining_ms, "ABSOLUTE", remaining_ms, "NX"]
            pending.append((record["session_key"], args))
        if not pending:
            return
        pipe = conf.client().redis.pipeline(transaction=False)
        for _, args in pending:
            pipe.execute_command(*args)
        for (key, _), reply in zip(pending, pipe.execute(raise_on_error=False)):
            if isinstance(reply, Exception):
                message = str(reply)
                if "was revoked" in message:
                    summary.revoked += 1
                elif message.startswith("session id") or "before now" in message or "max-sessions" in message:
                    # An id the module refuses, a lifetime over meanwhile, an owner at the limit.
                    summary.refused += 1
                else:
                    summary.errors.append((key[:6] + "…", message))
            elif reply is None:
                summary.already_present += 1
            else:
                summary.imported += 1

    def _progress(self, summary: Summary, total: int) -> None:
        width = 30
        done = min(summary.read, total) if total else summary.read
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        self.stderr.write(
            f"\r[{bar}] {done}/{total} read, {summary.imported} imported "
            f"(resume with --after {summary.last_key})",
            ending="",
        )
        self.stderr.flush()

    def _report(self, summary: Summary) -> None:
        self.stdout.write(
            f"Read {summary.read} row(s): {summary.imported} imported, "
            f"{summary.already_present} already in qsess, {summary.revoked} logged out since "
            f"(not resurrected), {summary.expired} expired, "
            f"{summary.empty_or_undecodable} empty or undecodable, "
            f"{summary.refused} refused, {len(summary.errors)} error(s)."
        )
        for key, message in summary.errors[:20]:
            self.stderr.write(f"  {key}: {message}")
