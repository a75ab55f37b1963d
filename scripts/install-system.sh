#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers and middleboxes; idempotent.
#   chromium  - a real browser with X25519MLKEM768 (tests/test_browser_e2e.py)
#   haproxy   - a real PROXY-protocol peer and SNI router (tests/test_proxy_protocol.py, the probe suite)
# Already installed -> print versions and stop. Otherwise, as root: apt-get update once, then install.
# Outside CI a machine where that is impossible (not root, no apt-get) only gets a warning: those tests then
# skip and say how to install. In CI (CI=true) anything missing fails the run.
set -euo pipefail

# package:command pairs
wanted=("chromium:chromium" "haproxy:haproxy")

give_up() {
    if [ "${CI:-}" = "true" ]; then
        echo "install-system: $1 (CI=true: these packages are required)" >&2
        exit 1
    fi
    echo "install-system: warning: $1; the tests that need them will be skipped" >&2
    exit 0
}

missing=()
for pair in "${wanted[@]}"; do
    command -v "${pair#*:}" >/dev/null 2>&1 || missing+=("${pair%%:*}")
done

if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || give_up "missing ${missing[*]} and this is not root (run: sudo $0)"
    command -v apt-get >/dev/null 2>&1 || give_up "missing ${missing[*]} and there is no apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || give_up "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || give_up "apt-get install ${missing[*]} failed"
    for pair in "${wanted[@]}"; do
        command -v "${pair#*:}" >/dev/null 2>&1 || give_up "${pair%%:*} installed but ${pair#*:} is not on PATH"
    done
fi
echo "system: $(chromium --version 2>/dev/null); $(haproxy -v 2>/dev/null | head -1)"
