// The peer users would otherwise pick: a TLS-terminating sidecar on Node.js 26 (OpenSSL 3.5), in front of
// the same upstream as pqproxy server, with the same certificate and groups.
// Usage: node node_sidecar.js LISTEN_PORT UPSTREAM_PORT CERT KEY GROUPS [handshake|first-data]
//   (prints "ready" when listening). first-data: the upstream is connected when the client first sends,
//   as pqproxy's --upstream-connect first-data does.
'use strict';
const fs = require('fs');
const net = require('net');
const tls = require('tls');
const [listenPort, upstreamPort, cert, key, groups, connectMode] = process.argv.slice(2);

function splice(client, first) {
  const upstream = net.connect(Number(upstreamPort), '127.0.0.1');
  upstream.setNoDelay(true);
  const done = () => { client.destroy(); upstream.destroy(); };
  client.on('error', done);
  upstream.on('error', done);
  if (first) upstream.write(first);
  client.pipe(upstream);
  upstream.pipe(client);
}

const server = tls.createServer({
  cert: fs.readFileSync(cert), key: fs.readFileSync(key), minVersion: 'TLSv1.3', ecdhCurve: groups,
}, (client) => {
  client.setNoDelay(true);  // as pqproxy does (TCP_NODELAY): without it, Nagle and delayed ACKs add ~40 ms
  if (connectMode !== 'first-data') {
    splice(client, null);
    return;
  }
  let spliced = false;
  client.on('error', () => client.destroy());
  client.once('data', (first) => { spliced = true; client.pause(); splice(client, first); });
  client.once('end', () => { if (!spliced) client.end(); });  // left without a word: no upstream at all
});
server.maxConnections = 20000;
server.on('tlsClientError', () => {});
server.listen(Number(listenPort), '127.0.0.1', 4096, () => console.log('ready'));
process.on('SIGTERM', () => process.exit(0));
