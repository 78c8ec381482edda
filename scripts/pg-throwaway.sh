#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and benchmarks: Debian's own binaries, a cluster in a
# directory of the caller's, listening on 127.0.0.1:PORT only, trust authentication for the one
# database user `leasehold` (loopback only; the cluster dies with its directory). No Docker.
#
# Usage:
#   scripts/pg-throwaway.sh start DIR PORT   # initdb (once) + start; prints the store URL
#   scripts/pg-throwaway.sh stop DIR         # fast shutdown
#
# As root the server runs as the `postgres` user (initdb refuses root); otherwise as the caller.
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "pg-throwaway: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
    exit 1
fi

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

command=${1:-}
dir=${2:-}
[ -n "$dir" ] || { echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2; }

case "$command" in
start)
    port=${3:?usage: $0 start DIR PORT}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
        # The cluster directory may sit under a root-only temp dir: let postgres through.
        parent=$(dirname "$dir")
        while [ "$parent" != "/" ]; do
            chmod o+x "$parent" 2>/dev/null || true
            parent=$(dirname "$parent")
        done
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$bindir/initdb" -D "$dir/data" -U leasehold --auth=trust -E UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # Sized for a test box: many nodes' pools at once, no fsync tuning (durability as shipped).
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c shared_buffers=64MB" \
        start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    if ! as_owner "$bindir/psql" -h 127.0.0.1 -p "$port" -U leasehold -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'leasehold'" | grep -q 1; then
        as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U leasehold leasehold
    fi
    echo "postgres://leasehold@127.0.0.1:$port/leasehold"
    ;;
stop)
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
*)
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
