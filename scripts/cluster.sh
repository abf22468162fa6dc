#!/usr/bin/env bash
# Kamailio and two PBX nodes on this machine, sharing one PostgreSQL, for
# trying the cluster (README: "Several nodes behind Kamailio"). Phones
# register and call to the edge, udp:$EDGE or tcp:$EDGE; Ctrl-C stops everything.
#
#   scripts/cluster.sh                    # or: make cluster
#   EDGE=127.0.0.1:5060 NODE_PORTS="5071 5072" DIALPLAN=dialplans/example.yaml \
#   DB='postgresql+psycopg://postgres@127.0.0.1:5432/postgres' SCHEMA=pbx_cluster scripts/cluster.sh
#
# Needs kamailio (make deps) and a PostgreSQL reachable at $DB; the schema
# $SCHEMA is made there if missing. Logs go to var/cluster/.
set -euo pipefail
cd "$(dirname "$0")/.."

EDGE=${EDGE:-127.0.0.1:5060}
NODE_PORTS=${NODE_PORTS:-5071 5072}
DIALPLAN=${DIALPLAN:-dialplans/example.yaml}
DB=${DB:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}
SCHEMA=${SCHEMA:-pbx_cluster}
PYTHON=${PYTHON:-.venv/bin/python}
KAMAILIO=${KAMAILIO:-$(command -v kamailio || echo /usr/sbin/kamailio)}
DIR=var/cluster

mkdir -p "$DIR/run"
"$PYTHON" - "$DB" "$SCHEMA" <<'PY'
import sys
from sqlalchemy import text
from pbx.store.db import make_engine
engine = make_engine(sys.argv[1])
with engine.begin() as conn:
    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{sys.argv[2]}"'))
PY
# The schema rides in the URL as libpq's search_path (pbx/store/db.py).
case "$DB" in *\?*) URL="$DB&options=-csearch_path%3D$SCHEMA" ;; *) URL="$DB?options=-csearch_path%3D$SCHEMA" ;; esac

pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

: > "$DIR/dispatcher.list"
letter=a
for port in $NODE_PORTS; do
    echo "1 sip:127.0.0.1:$port" >> "$DIR/dispatcher.list"
    PYTHONUNBUFFERED=1 PBX_NODE="node-$letter" "$PYTHON" -m pbx serve --dialplan "$DIALPLAN" --db "$URL" \
        --listen "udp:127.0.0.1:$port" --pid-file "$DIR/node-$letter.pid" > "$DIR/node-$letter.log" 2>&1 &
    pids+=($!)
    echo "node-$letter: udp:127.0.0.1:$port (log $DIR/node-$letter.log)"
    letter=$(echo "$letter" | tr a-y b-z)
    sleep 2   # the first node migrates the schema; the next waits on its lock anyway
done
"$KAMAILIO" -DD -E -f deploy/kamailio/kamailio.cfg -Y "$PWD/$DIR/run" -w "$PWD/$DIR" \
    -A "EDGE_LISTEN=udp:$EDGE" -A "EDGE_LISTEN_TCP=tcp:$EDGE" -A "DISPATCHER_LIST=\"$PWD/$DIR/dispatcher.list\"" > "$DIR/kamailio.log" 2>&1 &
pids+=($!)
echo "edge:   udp:$EDGE and tcp:$EDGE (log $DIR/kamailio.log): register phones and call here; Ctrl-C stops all"
wait -n "${pids[@]}" || true
echo "a process exited; stopping the rest" >&2
