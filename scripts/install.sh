#!/usr/bin/env bash
# Install patchwidget for development into .venv (idempotent; fast when already installed).
#   bash scripts/install.sh            # Python package + test tools (builds js/ into the bundle)
#   bash scripts/install.sh --browser  # also Debian's chromium and js/ node_modules (JS unit tests)
set -euo pipefail

TORCH_PIN="torch==2.13.0"
BUNDLE="patchwidget/static/widget.js"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

browser=0
for arg in "$@"; do
    case "$arg" in
        --browser) browser=1 ;;
        -h | --help) sed -n '2,4p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

step() { echo "==> install: $*"; }
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

apt_install() {
    if [ -z "${apt_updated:-}" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. Virtual environment (reused when present).
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -c "import ensurepip, venv" 2>/dev/null; then
        step "installing python3-venv (apt)"
        apt_install python3-venv
    fi
    step "creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
pip() { "$VPY" -m pip --quiet "$@"; }

# 2. torch, pinned here (the package itself accepts a range).
if ! "$VPY" -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '2.13.0')" 2>/dev/null; then
    step "pip install $TORCH_PIN"
    pip install "$TORCH_PIN"
fi

# 3. Browser and JS test dependencies (before the package build, so its npm install is a no-op).
if [ "$browser" = 1 ]; then
    if [ ! -x /usr/bin/chromium ]; then
        step "installing chromium (apt)"
        apt_install chromium
    fi
    [ -f js/package-lock.json ] || { echo "install.sh: js/package-lock.json is missing" >&2; exit 1; }
    if [ ! -d js/node_modules ] || [ js/package-lock.json -nt js/node_modules/.package-lock.json ] \
        || [ js/package.json -nt js/node_modules/.package-lock.json ]; then
        step "npm ci (js/)"
        (cd js && npm ci --silent)
    fi
fi

# 4. The package in editable mode with its test extras; the build hook runs npm to make the bundle.
#    Redone when pyproject.toml changed, or the bundle is missing or older than a js/ source file.
stamp=".venv/.patchwidget-install"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
stale_js=""
if [ -f "$BUNDLE" ]; then
    stale_js="$(find js \( -path js/node_modules -o -path js/tests \) -prune -o -type f \
        -newer "$BUNDLE" -print -quit)"
fi
if [ ! -f "$BUNDLE" ] || [ -n "$stale_js" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    if [ -n "$stale_js" ]; then
        step "js/ changed since the last bundle ($stale_js): rebuilding"
    fi
    step "pip install -e .[test] (builds js/ -> $BUNDLE)"
    pip install -e ".[test]"
    [ -f "$BUNDLE" ] || { echo "install.sh: the build did not produce $BUNDLE" >&2; exit 1; }
    echo "$want" >"$stamp"
fi
step "done (torch $("$VPY" -c 'import importlib.metadata as m; print(m.version("torch"))'))"
