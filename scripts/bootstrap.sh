#!/usr/bin/env bash
# Set up everything the two README commands need on a fresh machine, idempotently:
# Debian packages, the pinned CoreDNS built with `go install`, and the Python venv.
# Each step is skipped when its result is already present, so reruns take seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=/dev/null
source scripts/versions.env

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# 1. Debian packages: real Prometheus/promtool, Alertmanager/amtool, dnsperf, Chromium for page tests.
apt_pkgs=()
command -v prometheus >/dev/null || apt_pkgs+=(prometheus)
command -v promtool >/dev/null || apt_pkgs+=(prometheus)
command -v prometheus-alertmanager >/dev/null || apt_pkgs+=(prometheus-alertmanager)
command -v dnsperf >/dev/null || apt_pkgs+=(dnsperf)
command -v chromium >/dev/null || apt_pkgs+=(chromium)
command -v chromedriver >/dev/null || apt_pkgs+=(chromium-driver)
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${apt_pkgs[*]}; run as root or install them: apt-get install -y ${apt_pkgs[*]}"
    exit 1
  fi
  log "apt-get install ${apt_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}" >/dev/null
  # Debian starts the packaged daemons; the project runs its own on loopback ports.
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    (systemctl stop "$svc" 2>/dev/null || service "$svc" stop 2>/dev/null || true) >/dev/null 2>&1
  done
fi

# 2. CoreDNS, the pinned release, built from source into the ignored tools folder.
mkdir -p .tools/bin
coredns_bin=.tools/bin/coredns
if [ ! -x "$coredns_bin" ] || ! "$coredns_bin" -version 2>/dev/null | grep -q "CoreDNS-${COREDNS_VERSION#v}"; then
  command -v go >/dev/null || { log "go is required to build CoreDNS (apt-get install golang or see go.dev)"; exit 1; }
  log "building CoreDNS ${COREDNS_VERSION} with go install (takes a few minutes once)"
  start=$(date +%s)
  GOBIN="$root/.tools/bin" GOFLAGS=-mod=mod go install "github.com/coredns/coredns@${COREDNS_VERSION}"
  log "CoreDNS built in $(( $(date +%s) - start ))s"
fi

# 3. Python environment with every role's extras (runtime-only installs: see Dockerfile).
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$py" -m venv .venv
fi
stamp=.venv/install.stamp
want=$(cat pyproject.toml scripts/versions.env | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing Python dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[training,exporter,webhook,dev]"
  echo "$want" >"$stamp"
fi
log "ready: $("$coredns_bin" -version | head -1), $(.venv/bin/python --version)"
