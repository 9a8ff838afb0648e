#!/usr/bin/env bash
# Login benchmark for BENCHMARKS.md, in one run on loopback (release binaries):
# - lucid-auth-service POST /auth/login (Argon2id m=19 MiB t=2 p=1, MongoDB user lookup,
#   Redis throttle and refresh-token writes, an EdDSA access token), straight and through
#   the api-gateway, beside the FastAPI template doing the same login in memory
#   (bench/fastapi_auth.py): wrk 2 threads, 8 connections, 10 s; p50, p99, logins/s, and the
#   peak RSS (VmHWM) of each service after the burst;
# - the gateway's cost of checking a client token per request: wrk on a route that answers
#   400 right after the token check (`GET /api/chunks/not-an-address`, no peer call), with a
#   good token and with none (401 before any check); and examples/token_costs.rs (one core).
# Needs: redis-server, nx-27017 (tests/harness/install-service-deps.sh), wrk, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
NX="${LUCID_NX27017:-/opt/lucid-nx/bin/nx-27017}"
VENV=/opt/lucid-fastapi
[ -x "$VENV/bin/uvicorn" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q "fastapi==0.115.0" "uvicorn==0.30.6"; }
"$VENV/bin/python" -c 'import argon2, jwt, cryptography' 2>/dev/null \
  || "$VENV/bin/pip" install -q "argon2-cffi==25.1.0" "PyJWT==2.10.1" "cryptography==44.0.0"
cargo build -q --release -p lucid-services --bins --examples
T="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# wrk with a script: p50 p99 requests/s and the non-2xx count.
wrk_run() { # url script connections
  wrk -t2 -c"$3" -d10s --latency -s "$2" "$1" | awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$NF} END {print p50, p99, rps, bad+0}'
}
cat >"$work/login.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"admin","password":"bench-password"}'
LUA

rp=$(port); mp=$(port)
redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
"$NX" --host 127.0.0.1 -p "$mp" --db memory --log-file "$work/nx.log" --pid-file "$work/nx.pid" >/dev/null 2>&1 & pids+=($!)
until (exec 3<>"/dev/tcp/127.0.0.1/$rp") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$mp") 2>/dev/null; do sleep 0.05; done
key="$($T/lucid-auth-service --new-signing-key)"
export LUCID_ENV=development JWT_SECRET_KEY=bench-key-0123456789abcdef-0123456789 RUST_LOG=warn \
  MONGODB_URL="mongodb://127.0.0.1:$mp/?directConnection=true" REDIS_URL="redis://127.0.0.1:$rp" \
  AUTH_SIGNING_KEY="$key" LUCID_ADMIN_PASSWORD=bench-password BENCH_PASSWORD=bench-password
public="$($T/lucid-auth-service --public-keys)"

ap=$(port); gp=$(port)
LUCID_AUTH_SERVICE_PORT=$ap LUCID_AUTH_SERVICE_ADMIN_PORT=$(port) $T/lucid-auth-service & apid=$!; pids+=($apid)
API_GATEWAY_PORT=$gp API_GATEWAY_ADMIN_PORT=$(port) AUTH_PUBLIC_KEYS="$public" LUCID_AUTH_SERVICE_URL="http://127.0.0.1:$ap" \
  $T/api-gateway & gpid=$!; pids+=($gpid)
until curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"username":"admin","password":"bench-password"}' "http://127.0.0.1:$ap/auth/login"; do sleep 0.1; done
auth_idle=$(rss $apid)
read -r a_p50 a_p99 a_rps a_bad < <(wrk_run "http://127.0.0.1:$ap/auth/login" "$work/login.lua" 8)
auth_peak=$(hwm $apid)
read -r g_p50 g_p99 g_rps g_bad < <(wrk_run "http://127.0.0.1:$gp/auth/login" "$work/login.lua" 8)
gw_peak=$(hwm $gpid)

token="$(curl -sf -X POST -H 'Content-Type: application/json' -d '{"username":"admin","password":"bench-password"}' "http://127.0.0.1:$gp/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token" >"$work/token.lua"
: >"$work/none.lua"
read -r t_p50 t_p99 t_rps _ < <(wrk_run "http://127.0.0.1:$gp/api/chunks/not-an-address" "$work/token.lua" 32)
read -r n_p50 n_p99 n_rps _ < <(wrk_run "http://127.0.0.1:$gp/api/chunks/not-an-address" "$work/none.lua" 32)

fp=$(port)
(cd bench && exec "$VENV/bin/uvicorn" fastapi_auth:app --host 127.0.0.1 --port "$fp" --log-level warning) & fpid=$!; pids+=($fpid)
until curl -sf "http://127.0.0.1:$fp/health" >/dev/null; do sleep 0.05; done
py_idle=$(rss $fpid)
read -r f_p50 f_p99 f_rps f_bad < <(wrk_run "http://127.0.0.1:$fp/auth/login" "$work/login.lua" 8)
py_peak=$(hwm $fpid)
costs="$($T/examples/token_costs)"

cat <<MD
| POST /auth/login, 8 connections, 10 s | p50 | p99 | logins/s | non-2xx | idle RSS | peak RSS (VmHWM) |
|---|---|---|---|---|---|---|
| Rust lucid-auth-service (MongoDB + Redis) | $a_p50 | $a_p99 | $a_rps | $a_bad | $((auth_idle / 1024)) MiB | $((auth_peak / 1024)) MiB |
| the same through api-gateway | $g_p50 | $g_p99 | $g_rps | $g_bad | | gateway $((gw_peak / 1024)) MiB |
| FastAPI template, same login in memory (uvicorn, 1 worker) | $f_p50 | $f_p99 | $f_rps | $f_bad | $((py_idle / 1024)) MiB | $((py_peak / 1024)) MiB |

| gateway, GET /api/chunks/not-an-address, 32 connections, 10 s | p50 | p99 | requests/s |
|---|---|---|---|
| with a good client token (checked, then 400) | $t_p50 | $t_p99 | $t_rps |
| without a token (401 before any check) | $n_p50 | $n_p99 | $n_rps |

| cost, this machine | |
|---|---|
$costs
MD
