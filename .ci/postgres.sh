#!/usr/bin/env bash
# Start Debian's PostgreSQL on 127.0.0.1 with a throw-away `nbprod` database, and print the
# `export NBPROD_TEST_PG_URL=...` line for the tests. Idempotent; run as root.
# Only that line goes to stdout (the caller evals it); everything else goes to stderr.
# The server must not inherit fd 3 (the caller's `$(...)` pipe): a postmaster holding it
# open keeps the command substitution waiting for EOF for ever, which is how a fresh CI
# machine (cluster not yet running) hung until its time limit.
set -euo pipefail
exec 3>&1 1>&2
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
port=${NBPROD_TEST_PG_PORT:-5432}
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main"; then
  pg_createcluster "$version" main -p "$port" -- --auth-local=trust --auth-host=scram-sha-256 >/dev/null
fi
pg_ctlcluster "$version" main start </dev/null >/dev/null 2>&1 3>&- || true  # "already running" is fine
for _ in $(seq 1 50); do
  su postgres -c "pg_isready -q -h 127.0.0.1 -p $port" && break
  sleep 0.2
done
su postgres -c "psql -q -h /var/run/postgresql -p $port -tc \"SELECT 1 FROM pg_roles WHERE rolname='nbprod'\"" | grep -q 1 \
  || su postgres -c "psql -q -h /var/run/postgresql -p $port -c \"CREATE ROLE nbprod LOGIN SUPERUSER PASSWORD 'nbprod'\""
su postgres -c "psql -q -h /var/run/postgresql -p $port -tc \"SELECT 1 FROM pg_database WHERE datname='nbprod'\"" | grep -q 1 \
  || su postgres -c "createdb -h /var/run/postgresql -p $port -O nbprod nbprod"
echo >&3 "export NBPROD_TEST_PG_URL=postgresql+psycopg://nbprod:nbprod@127.0.0.1:$port/nbprod"
