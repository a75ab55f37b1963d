// The load generator for both sidecars (the same one, so that only the server differs): Node.js 26's TLS
// client. One JSON line on stdout with what it measured.
// Usage: node node_load.js '{"mode": "handshakes"|"bulk"|"idle", "port": P, "ca": F, "groups": "...", ...}'
//   handshakes: n connections, `concurrency` at a time; each handshakes, sends 1 byte, waits for its echo, ends.
//   bulk: one connection sends `bytes` and reads them back (the upstream echoes).
//   idle: n connections handshake and stay open until stdin closes; `held` counts those still open 1 s later.
'use strict';
const fs = require('fs');
const tls = require('tls');
const cfg = JSON.parse(process.argv[2]);
const STALL_MS = 30000;
const ca = fs.readFileSync(cfg.ca);
const options = { host: '127.0.0.1', port: cfg.port, ca, servername: cfg.servername || 'localhost',
                  ecdhCurve: cfg.groups, minVersion: 'TLSv1.3' };

function connect() {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no handshake in ${STALL_MS} ms (socket ${socket.connecting ? 'connecting' : 'connected'})`));
    }, STALL_MS);
    const socket = tls.connect({ ...options, noDelay: true }, () => {
      clearTimeout(timer);
      resolve({ socket, ms: Number(process.hrtime.bigint() - started) / 1e6 });
    });
    socket.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

async function handshakes() {
  const latencies = [];
  let errors = 0;
  let next = 0;
  const groups = {};
  const started = process.hrtime.bigint();
  async function worker() {
    while (next < cfg.n) {
      next++;
      try {
        const t0 = process.hrtime.bigint();
        const { socket } = await connect();
        const group = (socket.getEphemeralKeyInfo() || {}).name || 'unknown';
        groups[group] = (groups[group] || 0) + 1;
        await new Promise((resolve, reject) => {
          socket.once('data', () => resolve());
          socket.once('error', reject);
          socket.write('x');
        });
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        socket.end();
        socket.destroy();
      } catch (e) {
        errors++;
      }
    }
  }
  await Promise.all(Array.from({ length: cfg.concurrency }, worker));
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  return { n: latencies.length, errors, groups, seconds: Number(process.hrtime.bigint() - started) / 1e9,
           p50_ms: at(0.5), p99_ms: at(0.99) };
}

async function bulk() {
  const { socket } = await connect();
  const chunk = Buffer.alloc(64 * 1024, 7);
  const started = process.hrtime.bigint();
  let received = 0;
  let sent = 0;
  let progress = Date.now();
  let timer;
  // A transfer that stops moving, or a connection that ends early, is an error with the counts, at once
  // (or after STALL_MS without a byte either way), never a wait for the harness's own timeout.
  const failed = new Promise((_, reject) => {
    timer = setInterval(() => {
      if (Date.now() - progress > STALL_MS) reject(new Error(`bulk stalled: ${sent} sent, ${received} echoed`));
    }, 1000);
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`closed after ${sent} sent, ${received} of ${cfg.bytes} echoed`)));
  });
  const echoed = new Promise((resolve) => {
    socket.on('data', (d) => { received += d.length; progress = Date.now(); if (received >= cfg.bytes) resolve(); });
  });
  async function write() {
    while (sent < cfg.bytes) {
      if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
      sent += chunk.length;
      progress = Date.now();
    }
  }
  try {
    await Promise.race([Promise.all([write(), echoed]), failed]);
  } finally {
    clearInterval(timer);
    socket.removeAllListeners('close');
    socket.destroy();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { bytes: sent + received, seconds, mib_s: (sent + received) / 1048576 / seconds };
}

async function idle() {
  const sockets = [];
  let errors = 0;
  let closed = 0;  // by the server after the handshake (e.g. its upstream connect failed): not held
  for (let i = 0; i < cfg.n; i += 100) {
    const batch = await Promise.allSettled(Array.from({ length: Math.min(100, cfg.n - i) }, connect));
    for (const r of batch) {
      if (r.status !== 'fulfilled') { errors++; continue; }
      const s = r.value.socket;
      s.on('error', () => {});
      s.once('close', () => { closed++; });
      sockets.push(s);
    }
  }
  await new Promise((r) => setTimeout(r, 1000));  // a server that drops connections has done so by now
  console.log(JSON.stringify({ held: sockets.length - closed, closed, errors }));
  process.stdin.resume();
  await new Promise((r) => process.stdin.on('end', r));
  for (const s of sockets) s.destroy();
  return null;
}

const run = { handshakes, bulk, idle }[cfg.mode];
run().then((result) => { if (result) console.log(JSON.stringify(result)); process.exit(0); },
           (e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
