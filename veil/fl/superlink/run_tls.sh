#!/bin/bash
# veil's Flower app (SecureFedAvg + secagg_mod) on Flower's deployment engine: a real
# SuperLink and 3 SuperNodes over TLS on this host, the app submitted with `flwr run`.
# Verified with flwr 1.42 (docs/fl.md, "SuperLink and SuperNodes over TLS").
#
#   bash veil/fl/superlink/run_tls.sh [WORKDIR]      # needs flwr's CLIs on PATH, openssl
#
# Writes WORKDIR/result.json (per-round history and test accuracy) and the logs.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
W=${1:-$(mktemp -d)}
mkdir -p "$W/certs" "$W/home"
B=$(dirname "$(command -v flower-superlink)") || { echo "flower-superlink not on PATH"; exit 2; }
export PATH=$B:$PATH FLWR_HOME=$W/home VEIL_SUPERLINK_RESULT=$W/result.json
export PYTHONPATH=$(cd "$HERE/../../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}
C=$W/certs
# A throw-away CA and a server certificate for 127.0.0.1 (use your own PKI in production).
openssl req -x509 -newkey rsa:2048 -nodes -keyout $C/ca.key -out $C/ca.crt -days 2 \
  -subj "/CN=veil-fl-test-ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout $C/server.key -out $C/server.csr \
  -subj "/CN=127.0.0.1" 2>/dev/null
printf "subjectAltName=IP:127.0.0.1,DNS:localhost\n" > $C/ext.cnf
openssl x509 -req -in $C/server.csr -CA $C/ca.crt -CAkey $C/ca.key -CAcreateserial \
  -out $C/server.pem -days 2 -extfile $C/ext.cnf 2>/dev/null
PORT=${VEIL_SUPERLINK_PORT:-19091}
flower-superlink --ssl-ca-certfile $C/ca.crt --ssl-certfile $C/server.pem \
  --ssl-keyfile $C/server.key --port $PORT --database $W/state.db > $W/superlink.log 2>&1 &
PIDS=$!
trap 'kill $PIDS 2>/dev/null' EXIT
for i in $(seq 300); do grep -q "Uvicorn running" $W/superlink.log && break; sleep 1; done
for i in 0 1 2; do
  # partition-id: which hospital's data this node trains on (veil.fl.tasks.client_app)
  flower-supernode --root-certificates $C/ca.crt --superlink 127.0.0.1:$PORT \
    --port $((PORT + 3 + i)) --node-config "partition-id=$i" > $W/supernode$i.log 2>&1 &
  PIDS="$PIDS $!"
done
for i in $(seq 300); do
  [ "$(grep -l 'Uvicorn running' $W/supernode*.log 2>/dev/null | wc -l)" = 3 ] && break; sleep 1
done
cat > $FLWR_HOME/config.toml <<TOML
[superlink]
default = "tls-local"

[superlink.tls-local]
address = "127.0.0.1:$PORT"
root-certificates = "$C/ca.crt"
TOML
sleep 3
timeout ${VEIL_SUPERLINK_TIMEOUT:-1800} flwr run "$HERE" tls-local --stream > $W/flwr-run.log 2>&1
rc=$?
echo "flwr run exit $rc; logs in $W"
cat $W/result.json 2>/dev/null || { echo "no result"; exit 1; }
exit $rc
