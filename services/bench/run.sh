#!/usr/bin/env bash
# Services benchmark for BENCHMARKS.md, in one run on loopback:
# - a Rust service (session-storage) vs a FastAPI service written to the seeds' template
#   (uvicorn, one worker): start-up time to a first 200 on /health, idle RSS, /health
#   latency p50/p99 under wrk (2 threads, 32 connections, 10 s), RSS after the load;
# - recorder throughput vs raw blake3 of the same bytes, one upload through the gateway and
#   8 at once through it, with the services' default limits (examples/throughput.rs); peak
#   RSS of storage, recorder and gateway after it.
# Needs: redis-server, nx-27017 (tests/harness/install-service-deps.sh), wrk, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
NX="${LUCID_NX27017:-/opt/lucid-nx/bin/nx-27017}"
VENV=/opt/lucid-fastapi
[ -x "$VENV/bin/uvicorn" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q "fastapi==0.115.0" "uvicorn==0.30.6"; }
cargo build -q --release -p lucid-services --bins --examples
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
wait_health() { local start=$1 url=$2; until curl -sf "$url" >/dev/null; do sleep 0.005; done; python3 -c "import time; print(round((time.time()-$start)*1000))"; }
now() { python3 -c 'import time; print(time.time())'; }
wrk_pcts() { wrk -t2 -c32 -d10s --latency "$1" | awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {rps=$2} END {print p50, p99, rps}'; }

rp=$(port); mp=$(port)
redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
"$NX" --host 127.0.0.1 -p "$mp" --db memory --log-file "$work/nx.log" --pid-file "$work/nx.pid" >/dev/null 2>&1 & pids+=($!)
sleep 1
mkdir -p "$work/data" "$work/logs"
export LUCID_ENV=development JWT_SECRET_KEY=bench-key-0123456789abcdef-0123456789 LUCID_STORAGE_PATH="$work/data" LUCID_LOGS_PATH="$work/logs" \
  MONGODB_URL="mongodb://127.0.0.1:$mp/?directConnection=true" REDIS_URL="redis://127.0.0.1:$rp" RUST_LOG=warn

sp=$(port); t0=$(now)
SESSION_STORAGE_PORT=$sp SESSION_STORAGE_ADMIN_PORT=$(port) target/release/session-storage & spid=$!; pids+=($spid)
rust_start=$(wait_health "$t0" "http://127.0.0.1:$sp/health"); sleep 1; rust_idle=$(rss $spid)
read -r rust_p50 rust_p99 rust_rps < <(wrk_pcts "http://127.0.0.1:$sp/health"); rust_loaded=$(hwm $spid)

fp=$(port); t0=$(now)
(cd bench && exec "$VENV/bin/uvicorn" fastapi_template:app --host 127.0.0.1 --port "$fp" --log-level warning) & fpid=$!; pids+=($fpid)
py_start=$(wait_health "$t0" "http://127.0.0.1:$fp/health"); sleep 1; py_idle=$(rss $fpid)
read -r py_p50 py_p99 py_rps < <(wrk_pcts "http://127.0.0.1:$fp/health"); py_loaded=$(hwm $fpid)

rp2=$(port); gp=$(port)
SESSION_RECORDER_PORT=$rp2 SESSION_RECORDER_ADMIN_PORT=$(port) SESSION_STORAGE_URL="http://127.0.0.1:$sp" target/release/session-recorder & rpid=$!; pids+=($rpid)
API_GATEWAY_PORT=$gp API_GATEWAY_ADMIN_PORT=$(port) SESSION_RECORDER_URL="http://127.0.0.1:$rp2" SESSION_STORAGE_URL="http://127.0.0.1:$sp" target/release/api-gateway & gpid=$!; pids+=($gpid)
until curl -sf "http://127.0.0.1:$rp2/health" >/dev/null && curl -sf "http://127.0.0.1:$gp/health" >/dev/null; do sleep 0.05; done
throughput=$(RECORDER_URL="http://127.0.0.1:$rp2" GATEWAY_URL="http://127.0.0.1:$gp" BENCH_MIB=64 target/release/examples/throughput)

cat <<MD
| service | start-up to first /health 200 | idle RSS | /health p50 | /health p99 | requests/s | RSS after load (peak) |
|---|---|---|---|---|---|---|
| Rust session-storage (lucid-kit, release) | ${rust_start} ms | $((rust_idle / 1024)) MiB | $rust_p50 | $rust_p99 | $rust_rps | $((rust_loaded / 1024)) MiB |
| FastAPI template (uvicorn, 1 worker) | ${py_start} ms | $((py_idle / 1024)) MiB | $py_p50 | $py_p99 | $py_rps | $((py_loaded / 1024)) MiB |

| path | bytes | throughput |
|---|---|---|
$throughput

| after the uploads | session-storage | session-recorder | api-gateway |
|---|---|---|---|
| peak RSS (VmHWM) | $(($(hwm $spid) / 1024)) MiB | $(($(hwm $rpid) / 1024)) MiB | $(($(hwm $gpid) / 1024)) MiB |
MD
