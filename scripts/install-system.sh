#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers and middleboxes; idempotent.
#   chromium  - a real browser with X25519MLKEM768 (tests/test_browser_e2e.py)
#   haproxy   - a real PROXY-protocol peer and SNI router (tests/test_proxy_protocol.py, the probe suite)
#   nginx     - stream ssl_preread, a middlebox that handles split and multi-record hellos (the probe suite)
#   squid-openssl - Squid with ssl_bump (Debian's plain squid is GnuTLS-built, without it): a real TLS-peeking proxy
#   tcpdump   - regenerates captures/ (make captures) and records probe packets
#   nftables  - the probe's raw-packet mode drops the kernel's RSTs for its own connections while it runs
#   iptables  - iptables-legacy: the lab's NFQUEUE rule (this kernel's nf_tables has no queue expression)
#   iproute2  - ip netns, veth, ss: the lab's namespaces
#   openssl   - the command line users make their private PKIs with (tests/openssl_pki.py)
#   prometheus - promtool checks and unit-tests deploy/monitoring's rules; a real prometheus scrapes the QKD
#               network and the sidecars (tests/test_monitoring.py)
# Already installed -> print versions and stop. Otherwise, as root: apt-get update once, then install.
# Outside CI a machine where that is impossible (not root, no apt-get) only gets a warning: those tests then
# skip and say how to install. In CI (CI=true) anything missing fails the run.
set -euo pipefail

# package:command pairs
wanted=("chromium:chromium" "haproxy:haproxy" "nginx:nginx" "libnginx-mod-stream:/usr/lib/nginx/modules/ngx_stream_module.so"
        "squid-openssl:/usr/share/doc/squid-openssl" "tcpdump:tcpdump" "nftables:nft"
        "iptables:iptables-legacy" "iproute2:ss" "openssl:openssl" "prometheus:promtool")

give_up() {
    if [ "${CI:-}" = "true" ]; then
        echo "install-system: $1 (CI=true: these packages are required)" >&2
        exit 1
    fi
    echo "install-system: warning: $1; the tests that need them will be skipped" >&2
    exit 0
}

have() {  # a command on PATH, or a file that must exist
    case "$1" in /*) [ -e "$1" ] ;; *) command -v "$1" >/dev/null 2>&1 ;; esac
}

missing=()
for pair in "${wanted[@]}"; do
    have "${pair#*:}" || missing+=("${pair%%:*}")
done

if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || give_up "missing ${missing[*]} and this is not root (run: sudo $0)"
    command -v apt-get >/dev/null 2>&1 || give_up "missing ${missing[*]} and there is no apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || give_up "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || give_up "apt-get install ${missing[*]} failed"
    for pair in "${wanted[@]}"; do
        have "${pair#*:}" || give_up "${pair%%:*} installed but ${pair#*:} is not on PATH"
    done
fi
echo "system: $(chromium --version 2>/dev/null); $(haproxy -v 2>/dev/null | head -1); $(nginx -v 2>&1); $(squid -v 2>/dev/null | head -1); $(tcpdump --version 2>&1 | head -1); $(nft --version); $(iptables-legacy --version); $(promtool --version 2>&1 | head -1)"
