#!/usr/bin/env bash
# Instruction counts per request (valgrind's callgrind counts instructions, not seconds: the
# same binary and inputs give the same counts whatever else the machine does).
#
#   benches/callgrind.sh [N] [OUT]     (default N=2000, OUT=target/callgrind.out)
#
# Runs target/release/mandate (build it first: cargo build --release) under callgrind on the
# demo config with its own SQLite file and metrics on (MANDATE_METRICS_LISTEN), sends N
# client_credentials requests then N GET /healthz over one keep-alive connection, stops the
# server, and prints the inclusive cost of the functions docs/performance.md quotes. Read the
# rest with `callgrind_annotate --inclusive=yes OUT`.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
OUT=$(realpath -m "${2:-target/callgrind.out}")
BIN=$(realpath target/release/mandate)
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
sed -e "s#^database_url = .*#database_url = \"sqlite://$DIR/m.db\"#" \
    -e 's#^listen = .*#listen = "127.0.0.1:18080"#' \
    -e 's#^issuer = .*#issuer = "http://127.0.0.1:18080"#' mandate.toml > "$DIR/mandate.toml"
cp -r policies "$DIR/" 2>/dev/null || true
(cd "$DIR" && MANDATE_METRICS_LISTEN=127.0.0.1:19464 \
  exec valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" --config "$DIR/mandate.toml") \
  > "$DIR/log" 2>&1 &
PID=$!
for _ in $(seq 600); do grep -q "listening on" "$DIR/log" && break; sleep 0.5; done
python3 - "$N" <<'PY'
import base64, http.client, sys
n = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", 18080, timeout=60)
auth = "Basic " + base64.b64encode(b"agent-runtime:s3cret").decode()
form = {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"}
for _ in range(n):
    c.request("POST", "/token", "grant_type=client_credentials", form)
    r = c.getresponse(); body = r.read(); assert r.status == 200, (r.status, body)
for _ in range(n):
    c.request("GET", "/healthz"); r = c.getresponse(); r.read(); assert r.status == 200
PY
kill -TERM "$PID"; wait "$PID" || true
echo "$N client_credentials + $N /healthz requests; inclusive instructions:"
callgrind_annotate --inclusive=yes --auto=no --threshold=100 "$OUT" 2>/dev/null \
  | grep -E "PROGRAM TOTALS|http::serve::serve::\{\{closure\}\}::\{\{closure\}\} |request_id.rs:<axum::middleware::from_fn|http/token.rs:<F as axum::handler|mandate::metrics::Metrics::http |Keyring::sign " \
  | sed -E 's#/[^ ]*/(src/[^:]*):#\1:#; s#  +# #g' | cut -c1-160
