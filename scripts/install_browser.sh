#!/usr/bin/env bash
# Installs what the browser test (tests/test_browser.py, `make browser-test`) needs:
#   - Chromium from Debian (apt-get) when /usr/bin/chromium is missing;
#   - the Python `playwright` package in the course venv when it is missing.
# It never runs `playwright install`: no browser download, the test drives /usr/bin/chromium.
#
# Usage: scripts/install_browser.sh [PYTHON]   (default: .venv/bin/python of this project)
# Environment: SLM_CHROMIUM overrides the Chromium path that is checked.
# Exit status: 0 = ready; 2 = cannot install here (no apt-get / not root and no chromium),
# so the test can skip with the reason printed on stderr; anything else = the install failed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${1:-$ROOT/.venv/bin/python}"
CHROMIUM="${SLM_CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$PYTHON" ]; then
    echo "install_browser.sh: no Python at $PYTHON (run 'make test' or 'make lab' once to build the venv)" >&2
    exit 1
fi

if [ ! -x "$CHROMIUM" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install_browser.sh: $CHROMIUM is missing and there is no apt-get to install it" >&2
        exit 2
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            SUDO="sudo -n"
        else
            echo "install_browser.sh: $CHROMIUM is missing; installing it needs root" \
                 "(sudo apt-get install chromium)" >&2
            exit 2
        fi
    fi
    echo "install_browser.sh: installing Debian's chromium with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
    if [ ! -x "$CHROMIUM" ]; then
        echo "install_browser.sh: apt-get finished but $CHROMIUM is still missing" >&2
        exit 1
    fi
fi

if ! "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
    echo "install_browser.sh: installing the playwright Python package (no browser download)" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check playwright
fi

"$PYTHON" -c "import playwright.sync_api"
echo "install_browser.sh: ready ($("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM"))" >&2
