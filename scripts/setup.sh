#!/usr/bin/env bash
# Set up a clone on Debian: the programs the test suite drives as real clients and oracles, then npm ci.
# As root it installs what is missing with apt-get; otherwise it says what to install. Usage: ./scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v psql >/dev/null && command -v pgbench >/dev/null || missing+=(postgresql-client)
# The PostgreSQL 15 oracle (test/oracles.ts finds it with pg_config --bindir).
{ command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/pg_ctl" ]; } || missing+=(postgresql-15)
/usr/bin/python3 -c 'import psycopg' 2>/dev/null || missing+=(python3-psycopg)
/usr/bin/python3 -c 'import asyncpg' 2>/dev/null || missing+=(python3-asyncpg)
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
command -v java >/dev/null || missing+=(default-jre-headless)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: install these Debian packages (or their equivalents), then run this again: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  echo "setup: installed ${missing[*]}" >&2
fi

npm ci --no-audit --no-fund
