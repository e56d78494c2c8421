#!/usr/bin/env bash
# Install the headless browser the annotator's end-to-end tests drive: Debian's chromium and
# chromium-driver (Playwright's own browser download is never used). Idempotent: does nothing
# when /usr/bin/chromium is already there. Needs root (CI runs as root); without root or
# apt-get it says how to install and exits 0, and the browser tests skip with that reason.
# A failing apt-get as root fails the script. POINTSUP_SKIP_BROWSER_INSTALL=1 skips it all.
set -euo pipefail

if [ -x /usr/bin/chromium ] || [ "${POINTSUP_SKIP_BROWSER_INSTALL:-0}" = "1" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser.sh: no apt-get here; install chromium yourself (browser tests will skip)" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install_browser.sh: not root; run 'apt-get install chromium chromium-driver' as root (browser tests will skip)" >&2
    exit 0
  fi
else
  SUDO=""
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "install_browser.sh: apt-get failed" >&2
  exit 1
fi
echo "install_browser.sh: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
