#!/usr/bin/env bash
# Installs the browser that tests/test_book_browser.py drives: Debian's Chromium at
# /usr/bin/chromium. (Playwright's own browser download is not used: it cannot be
# fetched here.) Does nothing when it is already installed. Used by .ci/run.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    echo "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q chromium
/usr/bin/chromium --version
