#!/bin/bash
# Instructions the server runs per request, counted by callgrind: a figure
# that, unlike loadgen's ratios on a shared machine, repeats to within a
# fraction of a percent, so a change of a few percent in a request's own
# work can be seen. User space only (the kernel's part of TLS and TCP is
# not counted); one HTTP/2 connection, one request at a time (curl).
#
#   bench/instructions.sh [get|create] [N] [BINARY]
#
# get:    N GETs of one 1 KiB ConfigMap with resourceVersion=0 (from the cache)
# create: N creates of a 1 KiB ConfigMap (generateName), embedded store
# Needs valgrind and curl. Prints the total and the instructions per request.
# The count includes the server's background work while the requests run,
# spread over N: compare runs with the same N (2000 GETs repeat within ~1%).
set -euo pipefail
MODE=${1:-get}
N=${2:-2000}
BIN=${3:-target/release/kube-apiserver}
WORK=$(mktemp -d)
trap 'kill $VP 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 20000))
D=$WORK/data
valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$BIN" --data-dir "$D" --secure-port $PORT \
  > "$WORK/server.log" 2>&1 &
VP=$!
CLIENT=(curl -s --http2 --cacert "$D/pki/ca.crt" --cert "$D/pki/admin.crt" --key "$D/pki/admin.key")
CURL=("${CLIENT[@]}" -o /dev/null)
for _ in $(seq 600); do
  if [ -f "$D/admin.kubeconfig" ] && [ "$("${CURL[@]}" -w '%{http_code}' "https://127.0.0.1:$PORT/readyz" || true)" = 200 ]; then
    break
  fi
  sleep 0.5
done
BASE="https://127.0.0.1:$PORT/api/v1/namespaces/default/configmaps"
python3 -c "import json; print(json.dumps({'apiVersion': 'v1', 'kind': 'ConfigMap',
  'metadata': {'generateName': 'cg-', 'labels': {'app': 'instructions'}}, 'data': {'a': 'x' * 900}}))" > "$WORK/body.json"
POST=(-X POST -H 'Content-Type: application/json' --data-binary "@$WORK/body.json")
case $MODE in
  get)
    # One object, read once so that the cache holds it decoded.
    NAME=$("${CLIENT[@]}" "${POST[@]}" "$BASE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["name"])')
    URL="$BASE/$NAME?resourceVersion=0"
    "${CURL[@]}" "$URL"
    EXTRA=()
    ;;
  create)
    URL=$BASE
    "${CURL[@]}" "${POST[@]}" "$URL"
    EXTRA=("${POST[@]}")
    ;;
  *) echo "unknown mode $MODE (get or create)" >&2; exit 2 ;;
esac
for _ in $(seq "$N"); do printf 'url = "%s"\noutput = /dev/null\n' "$URL"; done > "$WORK/urls"
callgrind_control -z $VP > /dev/null 2>&1
CODES=$("${CURL[@]}" "${EXTRA[@]}" -K "$WORK/urls" -w '%{http_code}\n' | sort | uniq -c | tr -s ' ')
callgrind_control -d $VP > /dev/null 2>&1
TOTAL=$(awk '/^summary:/ {print $2}' "$WORK/cg.out.1")
echo "$MODE x $N (status:$CODES): $TOTAL instructions, $((TOTAL / N)) per request"
