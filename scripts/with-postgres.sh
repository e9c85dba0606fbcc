#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server: initdb in a temp dir, listen only on a private unix
# socket, create a database, export HEARTH_TEST_PG, run the command, then stop the server and delete it
# (also when the command fails or is interrupted). The command's exit status is returned.
# Usage: scripts/with-postgres.sh .venv/bin/python -m pytest -q
set -euo pipefail

bindir=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bindir=$d; done
if [ -z "$bindir" ] && command -v initdb >/dev/null; then bindir=$(dirname "$(command -v initdb)"); fi
if [ -z "$bindir" ]; then
  echo "with-postgres: PostgreSQL server binaries not found (apt-get install postgresql); running without it" >&2
  exec "$@"
fi

tmp=$(mktemp -d /tmp/hearth-pg.XXXXXX)
chmod 755 "$tmp"
# initdb refuses to run as root: run the server as the `postgres` user the Debian package creates.
as=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$tmp"
  as=(runuser -u postgres --)
fi

stop() {
  "${as[@]}" "$bindir/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap stop EXIT
trap 'exit 130' INT TERM

"${as[@]}" "$bindir/initdb" -D "$tmp/data" -U postgres --auth=trust --no-locale -E UTF8 >"$tmp/initdb.log" 2>&1 \
  || { cat "$tmp/initdb.log" >&2; exit 1; }
# No TCP at all (listen_addresses=''): the socket lives in our private temp dir, so the port cannot clash.
"${as[@]}" "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 60 \
  -o "-k $tmp -c listen_addresses='' -p 5432 -c fsync=off -c full_page_writes=off" start >/dev/null \
  || { cat "$tmp/server.log" >&2; exit 1; }
"${as[@]}" "$bindir/createdb" -h "$tmp" -p 5432 -U postgres hearth_test

export HEARTH_TEST_PG="postgresql://postgres@/hearth_test?host=$tmp&port=5432"
echo "with-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') at $tmp (HEARTH_TEST_PG)" >&2
set +e
"$@"
rc=$?
set -e
exit $rc
