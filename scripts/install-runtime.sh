#!/usr/bin/env bash
# Install coredns-anomaly's runtime roles (exporter + webhook, no TensorFlow) into a venv.
# The Dockerfile RUNs this for every install step, and tests/deploy runs it into a fresh venv,
# so what CI checks is what the image contains.
#
#   scripts/install-runtime.sh [--venv DIR] [--tflite-runtime | --training] [--editable]
#                              [--test-deps] [--force] [SRC]
#
#   --venv DIR         venv to create or reuse (default .venv-runtime)
#   --tflite-runtime   the exporter on tflite-runtime 2.14 instead of ai-edge-litert
#                      (extra `exporter-tflite`: numpy<2; wheels exist only up to Python 3.11)
#   --training         the training image's set: training + exporter (brings TensorFlow)
#   --editable         pip install -e (a dev venv follows the work tree)
#   --test-deps        also pytest, pytest-timeout, hypothesis (CI runs the exporter tests here)
#   --force            reinstall even if the stamp says nothing changed
#   SRC                project source (default: this script's repository)
#
# PYTHON picks the interpreter that creates the venv (default python3). Idempotent: a stamp in the
# venv holds a hash of pyproject.toml, this script and the options; a rerun with the same hash
# does nothing (like scripts/bootstrap.sh).
set -euo pipefail

log() { printf '[install-runtime] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv=.venv-runtime
variant=litert
editable=0
test_deps=0
force=0
src=""
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) [ $# -ge 2 ] || die "--venv needs a directory"; venv=$2; shift 2 ;;
    --venv=*) venv=${1#--venv=}; shift ;;
    --tflite-runtime) variant=tflite; shift ;;
    --training) variant=training; shift ;;
    --editable) editable=1; shift ;;
    --test-deps) test_deps=1; shift ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$src" ] || die "only one SRC"; src=$1; shift ;;
  esac
done
src="$(cd "${src:-$here/..}" && pwd)"
[ -f "$src/pyproject.toml" ] || die "no pyproject.toml in $src"

case "$variant" in
  litert) extras="exporter,webhook" ;;
  tflite) extras="exporter-tflite,webhook" ;;
  training) extras="training,exporter" ;;
esac
# Floors as in pyproject's `dev` extra (tests/deploy checks they agree).
test_pkgs=("pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100")

py=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  command -v "$py" >/dev/null || die "$py not found (set PYTHON)"
  if [ "$variant" = tflite ]; then
    # tflite-runtime 2.14.0 is the last release; it has no wheels past CPython 3.11.
    "$py" -c 'import sys; sys.exit(sys.version_info[:2] > (3, 11))' \
      || die "--tflite-runtime needs Python <= 3.11 (tflite-runtime 2.14 wheels); set PYTHON=python3.11"
  fi
  log "creating $venv with $("$py" --version 2>&1)"
  "$py" -m venv "$venv"
elif [ "$variant" = tflite ]; then
  "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] > (3, 11))' \
    || die "$venv runs Python > 3.11; tflite-runtime 2.14 needs <= 3.11: remove $venv"
fi

stamp="$venv/install-runtime.stamp"
want=$(
  {
    cat "$src/pyproject.toml" "${BASH_SOURCE[0]}"
    echo "$variant $editable $test_deps $src"
  } | sha256sum | cut -d' ' -f1
)
if [ "$force" = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "$venv is up to date ($variant)"
  exit 0
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
target="$src[$extras]"
if [ "$editable" = 1 ]; then
  "${pip[@]}" install -q -e "$target"
else
  # A non-editable build writes build/ into SRC; the image copies SRC, so that is harmless.
  "${pip[@]}" install -q "$target"
fi
if [ "$test_deps" = 1 ]; then
  "${pip[@]}" install -q "${test_pkgs[@]}"
fi

# Refuse a runtime venv that pulled TensorFlow in by a transitive dependency: the image would
# grow by ~600 MB and the exporter's "never imports TensorFlow" contract would be untested.
if [ "$variant" != training ]; then
  "$venv/bin/python" - <<'EOF'
import importlib.metadata as md
import re
import sys

heavy = re.compile(r"^(tensorflow|tf[-_]keras|keras|tensorboard|tf[-_]nightly)([-_].*)?$", re.I)
found = sorted({d.metadata["Name"] for d in md.distributions() if heavy.match(d.metadata["Name"] or "")})
if found:
    sys.exit(f"[install-runtime] error: the runtime install pulled in {', '.join(found)}")
EOF
fi
echo "$want" >"$stamp"
log "installed .[$extras] into $venv ($("$venv/bin/python" --version 2>&1))"
