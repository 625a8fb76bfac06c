#!/usr/bin/env bash
# Installs Debian's redis-server when it is missing (the shared-governor tests start their own).
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing redis-server (Debian package)..." >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
# The package starts a system instance; the tests run their own on free ports.
($SUDO service redis-server stop >/dev/null 2>&1 || true)
