// Plain TCP load for a client-mode sidecar (the application's side): n connections, `concurrency` at a
// time; each sends one byte, waits for its echo, ends. One JSON line on stdout: {"n", "errors"}.
// Usage: node node_plain_load.js PORT N CONCURRENCY
'use strict';
const net = require('net');
const [port, n, concurrency] = process.argv.slice(2).map(Number);
const TIMEOUT_MS = 30000;
let started = 0;
let done = 0;
let errors = 0;

function one() {
  if (started >= n) return;
  started++;
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  socket.setTimeout(TIMEOUT_MS, () => { errors++; socket.destroy(); });
  socket.on('connect', () => socket.write('x'));
  socket.on('data', () => socket.end());
  socket.on('error', () => { errors++; });
  socket.on('close', () => {
    done++;
    if (done === n) console.log(JSON.stringify({ n, errors }));
    else one();
  });
}

for (let i = 0; i < Math.min(concurrency, n); i++) one();
