#!/bin/bash
# Instructions the server runs per request, counted by callgrind: a figure
# that, unlike loadgen's ratios on a shared machine, repeats to within a
# fraction of a percent, so a change of a few percent in a request's own
# work can be seen. User space only (the kernel's part of TLS and TCP is
# not counted); one HTTP/2 connection, one request at a time (curl).
#
#   bench/instructions.sh [get|create|stack] [N] [BINARY]
#
# get:    N GETs of one 1 KiB ConfigMap with resourceVersion=0 (from the cache)
# create: N creates of a 1 KiB ConfigMap (generateName), embedded store
# stack:  N GETs of loadgen's bare hyper+rustls stack (`loadgen --serve-stack`)
#         answering the bytes the server answers `get` with: the baseline of
#         loadgen's GET target, so stack / get is that target's ratio with the
#         machine taken out. BINARY defaults to target/release/loadgen here.
# Needs valgrind and curl. Prints the total and the instructions per request.
# The count includes the server's background work while the requests run,
# spread over N: compare runs with the same N (2000 GETs repeat within ~1%).
# PARALLEL=P sends P requests at a time on the connection (curl --parallel),
# as loadgen's clients do; the default is one at a time.
# KEEP_PROFILE=FILE keeps callgrind's profile, for callgrind_annotate.
set -euo pipefail
MODE=${1:-get}
N=${2:-2000}
WORK=$(mktemp -d)
VP=
trap '[ -z "$VP" ] || kill $VP 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 20000))
D=$WORK/data

# Starts "$@" under callgrind, in the background.
counted() {
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$@" > "$WORK/server.log" 2>&1 &
  VP=$!
}
# Waits until curl with "${CURL[@]}" gets a 200 from $1.
until_ok() {
  for _ in $(seq 600); do
    if [ "$("${CURL[@]}" -w '%{http_code}' "$1" || true)" = 200 ]; then return; fi
    sleep 0.5
  done
  echo "no 200 from $1; the log:" >&2
  cat "$WORK/server.log" >&2
  exit 1
}
# The 1 KiB ConfigMap every mode writes or reads.
python3 -c "import json; print(json.dumps({'apiVersion': 'v1', 'kind': 'ConfigMap',
  'metadata': {'generateName': 'cg-', 'labels': {'app': 'instructions'}}, 'data': {'a': 'x' * 900}}))" > "$WORK/body.json"
POST=(-X POST -H 'Content-Type: application/json' --data-binary "@$WORK/body.json")
EXTRA=()

if [ "$MODE" = stack ]; then
  LOADGEN=${3:-target/release/loadgen}
  # The server's answer to `get`, from a server that is not counted.
  SERVER=target/release/kube-apiserver
  "$SERVER" --data-dir "$D" --secure-port $PORT > "$WORK/uncounted.log" 2>&1 &
  SP=$!
  CLIENT=(curl -s --http2 --cacert "$D/pki/ca.crt" --cert "$D/pki/admin.crt" --key "$D/pki/admin.key")
  CURL=("${CLIENT[@]}" -o /dev/null)
  for _ in $(seq 600); do [ -f "$D/admin.kubeconfig" ] && break; sleep 0.2; done
  until_ok "https://127.0.0.1:$PORT/readyz"
  BASE="https://127.0.0.1:$PORT/api/v1/namespaces/default/configmaps"
  NAME=$("${CLIENT[@]}" "${POST[@]}" "$BASE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["name"])')
  S=$WORK/stack
  mkdir "$S"
  "${CLIENT[@]}" "$BASE/$NAME?resourceVersion=0" > "$S/body.json"
  kill $SP
  counted "$LOADGEN" --serve-stack "$S"
  for _ in $(seq 600); do [ -f "$S/url" ] && break; sleep 0.2; done
  CLIENT=(curl -s --http2 --cacert "$S/ca.crt" --cert "$S/client.crt" --key "$S/client.key")
  CURL=("${CLIENT[@]}" -o /dev/null)
  URL="$(cat "$S/url")/api/v1/namespaces/default/configmaps/$NAME?resourceVersion=0"
  until_ok "$URL"
else
  counted "${3:-target/release/kube-apiserver}" --data-dir "$D" --secure-port $PORT
  CLIENT=(curl -s --http2 --cacert "$D/pki/ca.crt" --cert "$D/pki/admin.crt" --key "$D/pki/admin.key")
  CURL=("${CLIENT[@]}" -o /dev/null)
  for _ in $(seq 600); do [ -f "$D/admin.kubeconfig" ] && break; sleep 0.5; done
  until_ok "https://127.0.0.1:$PORT/readyz"
  BASE="https://127.0.0.1:$PORT/api/v1/namespaces/default/configmaps"
  case $MODE in
    get)
      # One object, read once so that the cache holds it decoded.
      NAME=$("${CLIENT[@]}" "${POST[@]}" "$BASE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["name"])')
      URL="$BASE/$NAME?resourceVersion=0"
      "${CURL[@]}" "$URL"
      ;;
    create)
      URL=$BASE
      "${CURL[@]}" "${POST[@]}" "$URL"
      EXTRA=("${POST[@]}")
      ;;
    *) echo "unknown mode $MODE (get, create or stack)" >&2; exit 2 ;;
  esac
fi
for _ in $(seq "$N"); do printf 'url = "%s"\noutput = /dev/null\n' "$URL"; done > "$WORK/urls"
callgrind_control -z $VP > /dev/null 2>&1
# PARALLEL=P: P requests at a time, multiplexed on the one connection.
PAR=()
if [ -n "${PARALLEL:-}" ]; then PAR=(--parallel --parallel-max "$PARALLEL" --no-progress-meter); fi
CODES=$("${CURL[@]}" "${EXTRA[@]}" "${PAR[@]}" -K "$WORK/urls" -w '%{http_code}\n' | sort | uniq -c | tr -s ' ')
callgrind_control -d $VP > /dev/null 2>&1
TOTAL=$(awk '/^summary:/ {print $2}' "$WORK/cg.out.1")
if [ -n "${KEEP_PROFILE:-}" ]; then cp "$WORK/cg.out.1" "$KEEP_PROFILE"; fi
echo "$MODE x $N (status:$CODES): $TOTAL instructions, $((TOTAL / N)) per request"
