#!/usr/bin/env bash
# Starts the example project beside `scripts/run` (Redis with qsess on 6380, the mirror on 6381):
# a virtualenv with the package, SQLite migrations, users alice/alice and admin/admin, the module's
# test GeoIP database (made-up locations for the demo addresses), then runserver.
# Environment: QSESS_REDIS_URL, QSESS_DATABASE_URL, QSESS_EXAMPLE_PORT (default 8000), QSESS_PYTHON.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pkg=$(dirname "$here")
repo=$(cd "$pkg/../.." && pwd)
export QSESS_REDIS_URL=${QSESS_REDIS_URL:-redis://127.0.0.1:6380/0}
export QSESS_DATABASE_URL=${QSESS_DATABASE_URL:-postgres://postgres@127.0.0.1:6381/qsess}
port=${QSESS_EXAMPLE_PORT:-8000}
python=${QSESS_PYTHON:-python3}
venv=$pkg/.venv-example

if [[ ! -x $venv/bin/python ]]; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -e "$pkg[django,hiredis]"
fi

geoip=$repo/tests/fixtures/geoip/qsess-test-city.mmdb
if [[ -f $geoip ]] && command -v redis-cli >/dev/null; then
    # Only when no database is configured: never replace a real one.
    current=$(redis-cli -u "$QSESS_REDIS_URL" config get qsess.geoip-db | sed -n 2p)
    [[ -n $current ]] || redis-cli -u "$QSESS_REDIS_URL" config set qsess.geoip-db "$geoip" >/dev/null
fi

cd "$here"
"$venv/bin/python" manage.py migrate --verbosity 0
"$venv/bin/python" manage.py shell -c '
from django.contrib.auth.models import User
for name, staff in (("alice", False), ("admin", True)):
    if not User.objects.filter(username=name).exists():
        User.objects.create_user(name, password=name, is_staff=staff, is_superuser=staff)
'
echo "example: http://127.0.0.1:$port/ (alice/alice; admin/admin at /admin/qsess/session/)"
# No autoreloader: scripts/run stops this process by its pid, and the reloader would leave a child.
exec "$venv/bin/python" manage.py runserver --noreload "127.0.0.1:$port" "$@"
