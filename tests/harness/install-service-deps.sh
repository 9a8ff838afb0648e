#!/usr/bin/env bash
# What the services' tests need: Debian's redis-server, and nx-27017 (PyPI), a MongoDB
# wire-protocol server on SQLite, in its own venv (no real mongod is packaged anywhere).
set -euo pipefail
if ! command -v redis-server >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # The package starts a system instance; the tests run their own on free ports.
  (systemctl stop redis-server 2>/dev/null || service redis-server stop 2>/dev/null || true) >/dev/null 2>&1
fi
VENV="${LUCID_NX_VENV:-/opt/lucid-nx}"
if [ ! -x "$VENV/bin/nx-27017" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "nx-27017==0.8.1"
fi
echo "$VENV/bin/nx-27017"
