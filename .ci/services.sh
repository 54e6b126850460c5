#!/usr/bin/env bash
# Sourced by .ci/test: points the tests at the local PostgreSQL and MariaDB,
# starts a service that is down, and fails loudly if one cannot be reached.
# The SQL store's tests never silently skip under CI.

export SESSIONS_TEST_POSTGRES_URL="${SESSIONS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export SESSIONS_TEST_MYSQL_URL="${SESSIONS_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"

wait_for() { # name, probe command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then echo "services: $name is up"; return 0; fi
    sleep 1
  done
  echo "services: $name is NOT reachable after 60 s; failing (tests must not skip)" >&2
  return 1
}

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
wait_for PostgreSQL psql "$SESSIONS_TEST_POSTGRES_URL" -tAc 'select 1'

if ! mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  echo "services: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
wait_for MariaDB mariadb -h 127.0.0.1 -u root -e 'select 1' test
