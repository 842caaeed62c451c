#!/usr/bin/env bash
# Build one CoreDNS release on demand into .tools/coredns-VERSION/coredns (idempotent).
# Only lab environments that run a second release need it (e.g. `make dataset-envs`);
# bootstrap.sh builds the pinned release (scripts/versions.env) into .tools/bin/coredns.
#   scripts/build-coredns.sh v1.12.4      (or 1.12.4)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ $# -eq 1 ] || { echo "usage: $0 VERSION (e.g. v1.12.4)" >&2; exit 2; }
version="v${1#v}"
dir=".tools/coredns-${version}"
bin="$dir/coredns"
if [ -x "$bin" ] && "$bin" -version 2>/dev/null | grep -q "CoreDNS-${version#v}"; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build CoreDNS (apt-get install golang)" >&2; exit 1; }
mkdir -p "$dir"
echo "[build-coredns] building CoreDNS ${version} with go install (a few minutes once)" >&2
start=$(date +%s)
GOBIN="$root/$dir" GOFLAGS=-mod=mod go install "github.com/coredns/coredns@${version}"
"$bin" -version >&2
echo "[build-coredns] built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
