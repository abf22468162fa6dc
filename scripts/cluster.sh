#!/usr/bin/env bash
# Kamailio and two PBX nodes on this machine, sharing one PostgreSQL, for
# trying the cluster (README: "Several nodes behind Kamailio"). Phones
# register and call to the edge, udp:$EDGE or tcp:$EDGE, or TLS on
# $EDGE_TLS (default 127.0.0.1:5061; a self-signed certificate is made in
# var/tls on first start, TLS_CERT= and TLS_KEY= for your own; EDGE_TLS=
# empty: no TLS); Ctrl-C stops everything.
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
EDGE_TLS=${EDGE_TLS-127.0.0.1:5061}
TLS_CERT=${TLS_CERT:-var/tls/pbx.crt}
TLS_KEY=${TLS_KEY:-var/tls/pbx.key}

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
tls=()
if [ -n "$EDGE_TLS" ]; then
    "$PYTHON" -m pbx tls self-signed --if-missing --cert "$TLS_CERT" --key "$TLS_KEY"
    tls=(-A "EDGE_LISTEN_TLS=tls:$EDGE_TLS" -A "EDGE_TLS_CERT=\"$(realpath "$TLS_CERT")\""
         -A "EDGE_TLS_KEY=\"$(realpath "$TLS_KEY")\"")
fi
"$KAMAILIO" -DD -E -f deploy/kamailio/kamailio.cfg -Y "$PWD/$DIR/run" -w "$PWD/$DIR" \
    -A "EDGE_LISTEN=udp:$EDGE" -A "EDGE_LISTEN_TCP=tcp:$EDGE" "${tls[@]}" \
    -A "DISPATCHER_LIST=\"$PWD/$DIR/dispatcher.list\"" > "$DIR/kamailio.log" 2>&1 &
pids+=($!)
echo "edge:   udp:$EDGE, tcp:$EDGE${EDGE_TLS:+, tls:$EDGE_TLS} (log $DIR/kamailio.log): register phones and call here; Ctrl-C stops all"
wait -n "${pids[@]}" || true
echo "a process exited; stopping the rest" >&2
