// The lab's independent TLS 1.3 server: Node.js 26 (OpenSSL 3.5) with X25519MLKEM768 first, echoing what
// it reads. Usage: node node_server.js HOST PORT CERT KEY. One JSON line per connection on stdout.
'use strict';
const fs = require('fs');
const tls = require('tls');
const [host, port, cert, key] = process.argv.slice(2);
const server = tls.createServer({
  cert: fs.readFileSync(cert), key: fs.readFileSync(key), minVersion: 'TLSv1.3',
  ecdhCurve: 'X25519MLKEM768:X25519:P-256:P-384', handshakeTimeout: 10000,
}, (socket) => {
  console.log(JSON.stringify({ event: 'handshake', servername: socket.servername || null,
                               cipher: socket.getCipher().name, remote: socket.remoteAddress }));
  socket.setTimeout(30000, () => socket.destroy());
  socket.on('error', () => {});
  socket.pipe(socket);
});
server.maxConnections = 512;
server.on('tlsClientError', (err) => console.log(JSON.stringify({ event: 'tlsClientError', code: err.code || null })));
server.listen(Number(port), host, () => console.log(JSON.stringify({ event: 'listening', host, port: Number(port) })));
process.on('SIGTERM', () => { server.close(); process.exit(0); });
