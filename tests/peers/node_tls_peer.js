'use strict';
// node_tls_peer.js: an independent TLS 1.3 peer (Node.js 26, OpenSSL 3.5) for pqproxy's interop tests.
//
// Usage: node node_tls_peer.js '<json config>'
// Every report is one JSON object per line on stdout. Diagnostics (and `trace` output) go to stderr.
//
// Config keys (only `mode` and `port` are required):
//   mode            "server" | "client"
//   host            default "127.0.0.1"; a server only accepts a loopback address
//   port            server: 0 picks a free port; {"event":"listening","port":N} is printed when ready
//   groups          colon list for OpenSSL's ecdhCurve, e.g. "X25519MLKEM768:X25519" (OpenSSL 3.5 tuple
//                   syntax such as "*X25519MLKEM768/*X25519" and "?name" also work)
//   ciphers         TLS 1.3 suites, e.g. "TLS_AES_256_GCM_SHA384". Passed as Node's `ciphers` option: Node has
//                   no `ciphersuites` option (it is silently ignored) and routes TLS_* names to the 1.3 list.
//   sigalgs         colon list, e.g. "ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256"
//   cert, key, ca   PEM file paths (server: cert+key required; client: cert+key for mTLS)
//   servername      client: SNI (default: host when it is not an IP address)
//   alpn            list of protocol names
//   requestCert, rejectUnauthorized   server: mTLS; client: rejectUnauthorized (default true)
//   minVersion, maxVersion            default "TLSv1.3" for both
//   sessionTickets  server: false sets SSL_OP_NO_TICKET. OpenSSL would then need a server-side session cache for
//                   TLS 1.3 (stateful) resumption, which Node does not keep: in effect resumption is off.
//   sessionTimeout  server: seconds
//   reconnect       client: N extra connections, each offering the session from the previous one
//   ports           client: connection i goes to ports[i % ports.length] (replicas sharing ticket keys), not port
//   echo            server: echo every byte; when the client half-closes, end after echoing (the default)
//   hashOnly        server: read until the client ends, reply {"sha256":hex,"length":n}\n, then end
//   behaviour       server: "echo" | "hashOnly" | "close" (same as the booleans; "close" ends after the handshake)
//   send            client: number of deterministic bytes to send (see below), then read `expect` bytes back
//   sendFile        client: send this file's bytes instead
//   sendThenHash    client: send N bytes, end (half-close), read to EOF and report what came back
//   halfClose       client: with send/sendFile, end right after sending and read to EOF
//   expect          client: bytes to wait for before ending (default: the number sent)
//   chunk           client: with send/sendFile against an echo server, write the payload `chunk` bytes at a time,
//                   each piece only once everything written before it has come back (ping-pong). Later pieces
//                   then go out after whatever the server sent in between (e.g. a KeyUpdate), not all at once
//                   right after the handshake.
//   seed            deterministic data seed (default "pqproxy"): block i = sha256(seed || uint64be(i))
//   timeout         client: overall limit in ms (default 30000); reported as code ETIMEDOUT
//   maxSendFragment setMaxSendFragment(n) on every socket
//   keylogFile      append NSS key log lines to this file
//   trace           socket.enableTrace(): OpenSSL's message trace on stderr
//   tap             default true: watch the raw byte stream (see below); false: no parsing, no decryption
//
// KeyUpdate: Node 26 has no API to send a TLS 1.3 KeyUpdate. tlsSocket.renegotiate() is the only key-related
// call and under TLS 1.3 it returns false and calls back with ERR_SSL_WRONG_SSL_VERSION. OpenSSL does answer a
// peer's KeyUpdate(update_requested) on its own; the tap below reports both directions as "keyupdate" events.
//
// The negotiated group: Node 26 exposes it only on the client, through tlsSocket.getEphemeralKeyInfo()
// ({type:"TLSGroup", name:"X25519MLKEM768"} for hybrid/ML-KEM groups, {type:"ECDH", name:"X25519", size:253}
// for classical ones). On the server it returns null. So each connection runs over a pass-through Duplex (the
// "tap") that parses the plaintext ClientHello / HelloRetryRequest / ServerHello, and, from the `keylog`
// secrets, decrypts the rest of the record stream: this gives the group on both sides, the peer's
// CertificateVerify signature scheme, alerts in both directions and KeyUpdate messages.
//
// Events (every one has "event"; per-connection ones have "conn", 1-based, and "side"):
//   listening  {port, host}                                  server ready
//   handshake  {protocol, cipher, group, groupId, serverKeyShareLength, hrr, hrrGroup, pskAccepted, peerSigalg,
//               peerSigalgId, certRequested, clientHello, clientHelloRetry, earlyRecords, tapOk, ephemeralKeyInfo,
//               alpn, servername, authorized, authorizationError, peerCertificate {subjectCN, issuerCN,
//               fingerprint256, subjectaltname} | null, sessionReused, sharedSigalgs}
//              clientHello = {length (handshake body), records, legacyVersion, cipherSuites, extensions, groups,
//               keyShares [{group, length}], sigalgs, versions, alpn, sni, psk}
//   result     {length, sha256} of the bytes received; client adds sent_length, sent_sha256 and text (the
//               received bytes when they are at most 64 KiB of valid UTF-8, else null)
//   alert      {direction: "sent"|"received", level, description, name}   seen on the wire, including close_notify
//   keyupdate  {direction, sender, requestUpdate}
//   error      {phase, code, message, alert?, alertName?, reason?, library?}  alert = "SSL alert number N" when
//               the error is a received alert (code looks like ERR_SSL_SSL/TLS_ALERT_HANDSHAKE_FAILURE or
//               ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED with OpenSSL 3.5); server handshake errors add clientHello
//   closed     the connection is closed
//   tap_error  the tap lost track of the stream (the connection itself is not affected)
// Exit codes: 0; client 1 after any error; 2 for a bad config.

const tls = require('tls');
const net = require('net');
const fs = require('fs');
const crypto = require('crypto');
const { Duplex } = require('stream');

function emit(obj) {
  try {
    process.stdout.write(JSON.stringify(obj) + '\n');
  } catch (_) {
    // stdout gone: nothing left to report to
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Name tables (IANA TLS registries)

const GROUPS = {
  0x0017: 'secp256r1', 0x0018: 'secp384r1', 0x0019: 'secp521r1', 0x001d: 'X25519', 0x001e: 'X448',
  0x001a: 'brainpoolP256r1', 0x001b: 'brainpoolP384r1', 0x001c: 'brainpoolP512r1',
  0x001f: 'brainpoolP256r1tls13', 0x0020: 'brainpoolP384r1tls13', 0x0021: 'brainpoolP512r1tls13',
  0x0100: 'ffdhe2048', 0x0101: 'ffdhe3072', 0x0102: 'ffdhe4096', 0x0103: 'ffdhe6144', 0x0104: 'ffdhe8192',
  0x0200: 'MLKEM512', 0x0201: 'MLKEM768', 0x0202: 'MLKEM1024',
  0x11eb: 'SecP256r1MLKEM768', 0x11ec: 'X25519MLKEM768', 0x11ed: 'SecP384r1MLKEM1024',
  0x6399: 'X25519Kyber768Draft00',
};
const SIGALGS = {
  0x0201: 'rsa_pkcs1_sha1', 0x0203: 'ecdsa_sha1', 0x0401: 'rsa_pkcs1_sha256', 0x0501: 'rsa_pkcs1_sha384',
  0x0601: 'rsa_pkcs1_sha512', 0x0403: 'ecdsa_secp256r1_sha256', 0x0503: 'ecdsa_secp384r1_sha384',
  0x0603: 'ecdsa_secp521r1_sha512', 0x0804: 'rsa_pss_rsae_sha256', 0x0805: 'rsa_pss_rsae_sha384',
  0x0806: 'rsa_pss_rsae_sha512', 0x0807: 'ed25519', 0x0808: 'ed448', 0x0809: 'rsa_pss_pss_sha256',
  0x080a: 'rsa_pss_pss_sha384', 0x080b: 'rsa_pss_pss_sha512', 0x081a: 'ecdsa_brainpoolP256r1tls13_sha256',
  0x081b: 'ecdsa_brainpoolP384r1tls13_sha384', 0x081c: 'ecdsa_brainpoolP512r1tls13_sha512',
  0x0904: 'mldsa44', 0x0905: 'mldsa65', 0x0906: 'mldsa87',
};
const ALERTS = {
  0: 'close_notify', 10: 'unexpected_message', 20: 'bad_record_mac', 22: 'record_overflow',
  40: 'handshake_failure', 42: 'bad_certificate', 43: 'unsupported_certificate', 44: 'certificate_revoked',
  45: 'certificate_expired', 46: 'certificate_unknown', 47: 'illegal_parameter', 48: 'unknown_ca',
  49: 'access_denied', 50: 'decode_error', 51: 'decrypt_error', 70: 'protocol_version',
  71: 'insufficient_security', 80: 'internal_error', 86: 'inappropriate_fallback', 90: 'user_canceled',
  109: 'missing_extension', 110: 'unsupported_extension', 112: 'unrecognized_name',
  113: 'bad_certificate_status_response', 115: 'unknown_psk_identity', 116: 'certificate_required',
  120: 'no_application_protocol',
};
// suite -> [cipher, key length, tag length, hash]
const SUITES = {
  0x1301: ['TLS_AES_128_GCM_SHA256', 'aes-128-gcm', 16, 16, 'sha256'],
  0x1302: ['TLS_AES_256_GCM_SHA384', 'aes-256-gcm', 32, 16, 'sha384'],
  0x1303: ['TLS_CHACHA20_POLY1305_SHA256', 'chacha20-poly1305', 32, 16, 'sha256'],
  0x1304: ['TLS_AES_128_CCM_SHA256', 'aes-128-ccm', 16, 16, 'sha256'],
  0x1305: ['TLS_AES_128_CCM_8_SHA256', 'aes-128-ccm', 16, 8, 'sha256'],
};
const HRR_RANDOM = 'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c';

function isGrease(v) {
  return (v & 0x0f0f) === 0x0a0a && (v >> 8) === (v & 0xff);
}
function groupName(v) {
  if (isGrease(v)) return 'GREASE';
  return GROUPS[v] || '0x' + v.toString(16).padStart(4, '0');
}
function sigalgName(v) {
  if (isGrease(v)) return 'GREASE';
  return SIGALGS[v] || '0x' + v.toString(16).padStart(4, '0');
}

// ---------------------------------------------------------------------------------------------------------------
// Key log store: client random (hex) -> { LABEL: Buffer }, and the taps waiting for those secrets.

const secrets = new Map();
const tapsByRandom = new Map();
let keylogFd = null;

function onKeylogLine(line) {
  const text = line.toString('latin1').trim();
  if (keylogFd !== null) {
    try {
      fs.writeSync(keylogFd, text + '\n');
    } catch (_) {
      // best effort
    }
  }
  const parts = text.split(' ');
  if (parts.length !== 3) return null;
  const [label, random, secret] = parts;
  if (!secrets.has(random)) secrets.set(random, {});
  secrets.get(random)[label] = Buffer.from(secret, 'hex');
  const tap = tapsByRandom.get(random);
  if (tap) tap.pump();
  return tap || null;
}

function hkdfExpandLabel(hash, secret, label, context, length) {
  const full = Buffer.from('tls13 ' + label, 'latin1');
  const info = Buffer.concat([
    Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([context.length]), context,
  ]);
  const out = [];
  let t = Buffer.alloc(0);
  let got = 0;
  for (let i = 1; got < length; i++) {
    t = crypto.createHmac(hash, secret).update(Buffer.concat([t, info, Buffer.from([i])])).digest();
    out.push(t);
    got += t.length;
  }
  return Buffer.concat(out).subarray(0, length);
}

// ---------------------------------------------------------------------------------------------------------------
// Small byte reader for handshake parsing

class Reader {
  constructor(buf) {
    this.b = buf;
    this.o = 0;
  }
  left() {
    return this.b.length - this.o;
  }
  u8() {
    if (this.left() < 1) throw new Error('short');
    return this.b[this.o++];
  }
  u16() {
    if (this.left() < 2) throw new Error('short');
    const v = this.b.readUInt16BE(this.o);
    this.o += 2;
    return v;
  }
  bytes(n) {
    if (this.left() < n) throw new Error('short');
    const v = this.b.subarray(this.o, this.o + n);
    this.o += n;
    return v;
  }
  vec8() {
    return this.bytes(this.u8());
  }
  vec16() {
    return this.bytes(this.u16());
  }
}

function u16list(buf) {
  const out = [];
  for (let i = 0; i + 1 < buf.length; i += 2) out.push(buf.readUInt16BE(i));
  return out;
}

function parseClientHello(body) {
  const r = new Reader(body);
  const info = { length: body.length, legacyVersion: r.u16() };
  info.random = r.bytes(32).toString('hex');
  r.vec8(); // legacy_session_id
  info.cipherSuites = u16list(r.vec16()).map((c) => (SUITES[c] ? SUITES[c][0] : '0x' + c.toString(16).padStart(4, '0')));
  r.vec8(); // compression methods
  info.extensions = [];
  info.groups = [];
  info.keyShares = [];
  info.sigalgs = [];
  info.versions = [];
  info.alpn = [];
  info.sni = null;
  info.psk = false;
  if (r.left() === 0) return info;
  const ext = new Reader(r.vec16());
  while (ext.left() > 0) {
    const type = ext.u16();
    const data = new Reader(ext.vec16());
    info.extensions.push(type);
    if (type === 0x000a) {
      info.groups = u16list(data.vec16()).map(groupName);
    } else if (type === 0x0033) {
      const ks = new Reader(data.vec16());
      while (ks.left() > 0) {
        const g = ks.u16();
        info.keyShares.push({ group: groupName(g), length: ks.vec16().length });
      }
    } else if (type === 0x000d) {
      info.sigalgs = u16list(data.vec16()).map(sigalgName);
    } else if (type === 0x002b) {
      info.versions = u16list(data.vec8()).map((v) => '0x' + v.toString(16).padStart(4, '0'));
    } else if (type === 0x0000) {
      const list = new Reader(data.vec16());
      while (list.left() > 0) {
        const kind = list.u8();
        const name = list.vec16();
        if (kind === 0 && info.sni === null) info.sni = name.toString('latin1');
      }
    } else if (type === 0x0010) {
      const list = new Reader(data.vec16());
      while (list.left() > 0) info.alpn.push(list.vec8().toString('latin1'));
    } else if (type === 0x0029) {
      info.psk = true;
    }
  }
  return info;
}

function parseServerHello(body) {
  const r = new Reader(body);
  r.u16();
  const random = r.bytes(32).toString('hex');
  r.vec8();
  const suite = r.u16();
  r.u8();
  const info = { hrr: random === HRR_RANDOM, suite, group: null, keyShareLength: null, psk: false, version: null };
  if (r.left() === 0) return info;
  const ext = new Reader(r.vec16());
  while (ext.left() > 0) {
    const type = ext.u16();
    const data = new Reader(ext.vec16());
    if (type === 0x0033) {
      info.group = data.u16();
      if (!info.hrr) info.keyShareLength = data.vec16().length;
    } else if (type === 0x002b) {
      info.version = data.u16();
    } else if (type === 0x0029) {
      info.psk = true;
    }
  }
  return info;
}

// ---------------------------------------------------------------------------------------------------------------
// The tap: a pass-through Duplex around the TCP socket that follows the TLS 1.3 record stream.

class Direction {
  constructor(sender) {
    this.sender = sender; // 'client' | 'server': who writes these records
    this.buf = Buffer.alloc(0);
    this.queue = [];
    this.hs = Buffer.alloc(0);
    this.epoch = 'plain'; // plain | handshake | app | dead
    this.keys = null;
    this.decrypted = 0;
    this.records = 0;
  }
}

class Tap extends Duplex {
  constructor(raw, side, conn, enabled) {
    super({ allowHalfOpen: true });
    this.raw = raw;
    this.side = side;
    this.conn = conn;
    this.enabled = enabled;
    this.c2s = new Direction('client');
    this.s2c = new Direction('server');
    this.clientHello = null;
    this.clientHelloRetry = null;
    this.hrr = false;
    this.hrrGroup = null;
    this.serverHello = null;
    this.suite = null;
    this.sigalgBy = { client: null, server: null };
    this.certRequested = false;
    this.tickets = 0;
    this.clientRandom = null;
    this.earlyRecords = 0;
    this.failed = false;
    raw.on('data', (d) => {
      this.observe(this.side === 'client' ? this.s2c : this.c2s, d);
      if (!this.push(d)) raw.pause();
    });
    this.established = false; // set once the TLS handshake has completed
    this.onEarlyEof = null;
    raw.on('end', () => {
      this.push(null);
      // Node does not notice an EOF in the middle of a handshake over a JS stream: the connection would stay
      // half-open forever. Report it and tear the connection down.
      setImmediate(() => {
        if (!this.established && !this.destroyed) {
          if (this.onEarlyEof) this.onEarlyEof();
          this.destroy();
        }
      });
    });
    raw.on('error', (e) => this.destroy(e));
    raw.on('close', () => this.destroy());
  }

  _read() {
    this.raw.resume();
  }

  _write(chunk, encoding, cb) {
    this.observe(this.side === 'client' ? this.c2s : this.s2c, chunk);
    this.raw.write(chunk, cb);
  }

  _final(cb) {
    this.raw.end();
    cb();
  }

  _destroy(err, cb) {
    this.raw.destroy();
    if (this.clientRandom) tapsByRandom.delete(this.clientRandom);
    cb(err);
  }

  direction(dir) {
    return dir.sender === this.side ? 'sent' : 'received';
  }

  observe(dir, chunk) {
    if (!this.enabled || this.failed || dir.epoch === 'dead') return;
    try {
      dir.buf = dir.buf.length ? Buffer.concat([dir.buf, chunk]) : Buffer.from(chunk);
      while (dir.buf.length >= 5) {
        const len = dir.buf.readUInt16BE(3);
        if (dir.buf.length < 5 + len) break;
        dir.queue.push(dir.buf.subarray(0, 5 + len));
        dir.buf = dir.buf.subarray(5 + len);
      }
      if (dir.buf.length === 0) dir.buf = Buffer.alloc(0);
      this.pumpDir(dir);
    } catch (e) {
      this.fail(e);
    }
  }

  fail(e) {
    if (this.failed) return;
    this.failed = true;
    emit({ event: 'tap_error', conn: this.conn, side: this.side, message: String(e && e.message ? e.message : e) });
  }

  pump() {
    if (!this.enabled || this.failed) return;
    try {
      this.pumpDir(this.c2s);
      this.pumpDir(this.s2c);
    } catch (e) {
      this.fail(e);
    }
  }

  secretFor(dir) {
    if (!this.clientRandom || !secrets.has(this.clientRandom)) return null;
    const s = secrets.get(this.clientRandom);
    const who = dir.sender === 'client' ? 'CLIENT' : 'SERVER';
    return s[dir.epoch === 'handshake' ? `${who}_HANDSHAKE_TRAFFIC_SECRET` : `${who}_TRAFFIC_SECRET_0`] || null;
  }

  setKeys(dir, secret) {
    const [, cipher, keyLen, tagLen, hash] = SUITES[this.suite];
    dir.keys = {
      secret, cipher, tagLen, hash,
      key: hkdfExpandLabel(hash, secret, 'key', Buffer.alloc(0), keyLen),
      iv: hkdfExpandLabel(hash, secret, 'iv', Buffer.alloc(0), 12),
      seq: 0n,
    };
  }

  decrypt(dir, record) {
    const k = dir.keys;
    const nonce = Buffer.from(k.iv);
    const seq = Buffer.alloc(8);
    seq.writeBigUInt64BE(k.seq);
    for (let i = 0; i < 8; i++) nonce[4 + i] ^= seq[i];
    const body = record.subarray(5);
    if (body.length < k.tagLen) throw new Error('record shorter than its tag');
    const ct = body.subarray(0, body.length - k.tagLen);
    const tag = body.subarray(body.length - k.tagLen);
    const d = crypto.createDecipheriv(k.cipher, k.key, nonce, { authTagLength: k.tagLen });
    if (k.cipher.endsWith('ccm')) d.setAAD(record.subarray(0, 5), { plaintextLength: ct.length });
    else d.setAAD(record.subarray(0, 5));
    d.setAuthTag(tag);
    const pt = Buffer.concat([d.update(ct), d.final()]);
    k.seq += 1n;
    let end = pt.length;
    while (end > 0 && pt[end - 1] === 0) end--;
    if (end === 0) throw new Error('inner plaintext has no content type');
    return { type: pt[end - 1], data: pt.subarray(0, end - 1) };
  }

  pumpDir(dir) {
    while (dir.queue.length > 0 && dir.epoch !== 'dead' && !this.failed) {
      const record = dir.queue[0];
      const type = record[0];
      const body = record.subarray(5);
      if (type === 20) {
        dir.queue.shift();
        continue;
      }
      if (type === 21 && body.length === 2) {
        dir.queue.shift();
        this.onAlert(dir, body);
        continue;
      }
      if (type === 22 && dir.epoch === 'plain') {
        dir.queue.shift();
        dir.records++;
        this.onHandshakeData(dir, body);
        continue;
      }
      if (type !== 23) {
        dir.queue.shift();
        continue;
      }
      if (dir.epoch === 'plain') {
        if (dir.sender === 'client' && this.serverHello) {
          dir.epoch = 'handshake';
        } else {
          dir.queue.shift(); // 0-RTT data (or garbage) before the ServerHello: not followed
          this.earlyRecords++;
          continue;
        }
      }
      if (!this.suite || !SUITES[this.suite]) {
        dir.epoch = 'dead';
        break;
      }
      if (!dir.keys) {
        const secret = this.secretFor(dir);
        if (!secret) break; // wait for the keylog line
        this.setKeys(dir, secret);
      }
      let inner;
      try {
        inner = this.decrypt(dir, record);
      } catch (e) {
        if (dir.sender === 'client' && dir.epoch === 'handshake' && dir.decrypted === 0) {
          dir.queue.shift(); // rejected 0-RTT data, skipped by the server too
          this.earlyRecords++;
          continue;
        }
        dir.epoch = 'dead';
        this.fail(new Error(`cannot decrypt a ${dir.sender} record: ${e.message}`));
        break;
      }
      dir.queue.shift();
      dir.decrypted++;
      if (inner.type === 21) this.onAlert(dir, inner.data);
      else if (inner.type === 22) this.onHandshakeData(dir, inner.data);
    }
  }

  onAlert(dir, body) {
    const description = body.length > 1 ? body[1] : null;
    emit({
      event: 'alert', conn: this.conn, side: this.side, direction: this.direction(dir),
      level: body[0], description, name: ALERTS[description] || null,
    });
  }

  onHandshakeData(dir, data) {
    dir.hs = dir.hs.length ? Buffer.concat([dir.hs, data]) : Buffer.from(data);
    while (dir.hs.length >= 4) {
      const len = dir.hs.readUIntBE(1, 3);
      if (dir.hs.length < 4 + len) break;
      const type = dir.hs[0];
      const body = dir.hs.subarray(4, 4 + len);
      dir.hs = dir.hs.subarray(4 + len);
      this.onHandshakeMessage(dir, type, body);
    }
  }

  onHandshakeMessage(dir, type, body) {
    if (type === 1) {
      const info = parseClientHello(body);
      info.records = dir.records;
      dir.records = 0;
      if (this.clientHello === null) {
        this.clientHello = info;
        this.clientRandom = info.random;
        tapsByRandom.set(info.random, this);
      } else {
        this.clientHelloRetry = info;
      }
    } else if (type === 2) {
      const sh = parseServerHello(body);
      this.suite = sh.suite;
      if (sh.hrr) {
        this.hrr = true;
        this.hrrGroup = sh.group;
      } else {
        this.serverHello = sh;
        dir.epoch = 'handshake';
        dir.keys = null;
      }
    } else if (type === 13) {
      this.certRequested = true;
    } else if (type === 15) {
      this.sigalgBy[dir.sender] = body.readUInt16BE(0);
    } else if (type === 20) {
      dir.epoch = 'app';
      dir.keys = null;
    } else if (type === 4) {
      this.tickets++;
    } else if (type === 24) {
      const requested = body[0] === 1;
      emit({
        event: 'keyupdate', conn: this.conn, side: this.side, direction: this.direction(dir),
        sender: dir.sender, requestUpdate: requested,
      });
      const k = dir.keys;
      const next = hkdfExpandLabel(k.hash, k.secret, 'traffic upd', Buffer.alloc(0), k.secret.length);
      this.setKeys(dir, next);
    }
  }

  summary() {
    if (!this.enabled) return { tapOk: false };
    const sh = this.serverHello;
    const peer = this.side === 'client' ? 'server' : 'client';
    const peerSig = this.sigalgBy[peer];
    return {
      group: sh && sh.group !== null ? groupName(sh.group) : null,
      groupId: sh && sh.group !== null ? sh.group : null,
      serverKeyShareLength: sh ? sh.keyShareLength : null,
      hrr: this.hrr,
      hrrGroup: this.hrrGroup !== null ? groupName(this.hrrGroup) : null,
      pskAccepted: sh ? sh.psk : null,
      peerSigalg: peerSig !== null ? sigalgName(peerSig) : null,
      peerSigalgId: peerSig,
      certRequested: this.certRequested,
      clientHello: this.clientHello ? stripRandom(this.clientHello) : null,
      clientHelloRetry: this.clientHelloRetry ? stripRandom(this.clientHelloRetry) : null,
      earlyRecords: this.earlyRecords,
      tapOk: this.enabled && !this.failed,
    };
  }
}

function stripRandom(info) {
  const { random, ...rest } = info;
  return rest;
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers shared by both modes

function deterministicBytes(n, seed) {
  const out = Buffer.alloc(n);
  const s = Buffer.from(seed, 'utf8');
  const ctr = Buffer.alloc(8);
  for (let i = 0, off = 0; off < n; i++, off += 32) {
    ctr.writeBigUInt64BE(BigInt(i));
    crypto.createHash('sha256').update(s).update(ctr).digest().copy(out, off);
  }
  return out;
}

function errorEvent(err, extra) {
  const message = String(err && err.message ? err.message : err);
  const ev = { event: 'error', ...extra, code: (err && err.code) || null, message };
  const m = /SSL alert number (\d+)/.exec(message);
  if (m) {
    ev.alert = Number(m[1]);
    ev.alertName = ALERTS[ev.alert] || null;
  }
  if (err && err.reason) ev.reason = err.reason;
  if (err && err.library) ev.library = err.library;
  return ev;
}

function certInfo(cert) {
  if (!cert || Object.keys(cert).length === 0) return null;
  return {
    subjectCN: (cert.subject && cert.subject.CN) || null,
    issuerCN: (cert.issuer && cert.issuer.CN) || null,
    fingerprint256: cert.fingerprint256 || null,
    subjectaltname: cert.subjectaltname || null,
  };
}

function handshakeEvent(sock, side, conn, tap, extra) {
  let eph = null;
  if (side === 'client') {
    try {
      eph = sock.getEphemeralKeyInfo();
    } catch (_) {
      eph = null;
    }
  }
  const cipher = sock.getCipher() || {};
  const t = tap ? tap.summary() : {};
  let group = t.group || null;
  if (!group && eph && eph.name) group = eph.name;
  let sharedSigalgs = null;
  try {
    sharedSigalgs = sock.getSharedSigalgs();
  } catch (_) {
    sharedSigalgs = null;
  }
  return {
    event: 'handshake', conn, side,
    protocol: sock.getProtocol(),
    cipher: cipher.standardName || cipher.name || null,
    ...t,
    group,
    ephemeralKeyInfo: eph,
    alpn: sock.alpnProtocol || null,
    servername: side === 'server' ? sock.servername || null : extra.servername || null,
    authorized: sock.authorized,
    authorizationError: sock.authorizationError ? String(sock.authorizationError) : null,
    peerCertificate: certInfo(sock.getPeerCertificate()),
    sessionReused: sock.isSessionReused(),
    sharedSigalgs,
  };
}

function readPem(path) {
  return path ? fs.readFileSync(path) : undefined;
}

function contextOptions(cfg) {
  const o = {
    minVersion: cfg.minVersion || 'TLSv1.3',
    maxVersion: cfg.maxVersion || 'TLSv1.3',
  };
  if (cfg.groups) o.ecdhCurve = cfg.groups;
  if (cfg.ciphers) o.ciphers = cfg.ciphers;
  if (cfg.sigalgs) o.sigalgs = cfg.sigalgs;
  if (cfg.cert) o.cert = readPem(cfg.cert);
  if (cfg.key) o.key = readPem(cfg.key);
  if (cfg.ca) o.ca = readPem(cfg.ca);
  if (cfg.alpn) o.ALPNProtocols = cfg.alpn;
  return o;
}

// ---------------------------------------------------------------------------------------------------------------
// Server

function runServer(cfg) {
  const host = cfg.host || '127.0.0.1';
  if (!['127.0.0.1', '::1', 'localhost'].includes(host)) {
    emit({ event: 'error', code: 'EBADCONFIG', message: `server host must be loopback, got ${host}` });
    process.exitCode = 2;
    return;
  }
  let behaviour = cfg.behaviour || 'echo';
  if (cfg.hashOnly) behaviour = 'hashOnly';
  else if (cfg.echo) behaviour = 'echo';
  const opts = {
    ...contextOptions(cfg),
    allowHalfOpen: true,
    requestCert: Boolean(cfg.requestCert),
    rejectUnauthorized: cfg.rejectUnauthorized === undefined ? Boolean(cfg.requestCert) : Boolean(cfg.rejectUnauthorized),
    enableTrace: Boolean(cfg.trace),
  };
  if (cfg.sessionTickets === false) opts.secureOptions = crypto.constants.SSL_OP_NO_TICKET;
  if (cfg.sessionTimeout !== undefined) opts.sessionTimeout = cfg.sessionTimeout;

  const tapOf = new WeakMap();
  const findTap = (sock) => {
    if (tapOf.has(sock)) return tapOf.get(sock);
    const parent = sock && sock._handle && sock._handle._parentWrap;
    return parent && parent.stream instanceof Tap ? parent.stream : null;
  };

  const server = tls.createServer(opts);
  server.on('keylog', (line, sock) => {
    const tap = onKeylogLine(line);
    if (tap && sock) tapOf.set(sock, tap);
  });
  server.on('tlsClientError', (err, sock) => {
    const tap = findTap(sock);
    const ev = errorEvent(err, { conn: tap ? tap.conn : null, side: 'server', phase: 'handshake' });
    if (tap) {
      tap.pump();
      const s = tap.summary();
      ev.clientHello = s.clientHello;
      ev.hrr = s.hrr;
    }
    emit(ev);
  });
  server.on('secureConnection', (sock) => {
    const tap = findTap(sock);
    const conn = tap ? tap.conn : null;
    if (tap) {
      tap.established = true;
      tap.pump();
    }
    if (cfg.maxSendFragment) sock.setMaxSendFragment(cfg.maxSendFragment);
    emit(handshakeEvent(sock, 'server', conn, tap, {}));
    const hash = crypto.createHash('sha256');
    let length = 0;
    let reported = false;
    const report = () => {
      if (reported) return null;
      reported = true;
      const ev = { event: 'result', conn, side: 'server', length, sha256: hash.digest('hex') };
      emit(ev);
      return ev;
    };
    sock.on('data', (d) => {
      hash.update(d);
      length += d.length;
    });
    sock.on('error', (err) => emit(errorEvent(err, { conn, side: 'server', phase: 'data' })));
    if (behaviour === 'echo') {
      sock.pipe(sock); // ends our side when the client has ended and everything has been echoed
      sock.on('end', report);
    } else if (behaviour === 'hashOnly') {
      sock.on('end', () => {
        const ev = report();
        sock.end(JSON.stringify({ sha256: ev.sha256, length: ev.length }) + '\n');
      });
    } else {
      sock.resume();
      sock.end();
      sock.on('end', report);
    }
    sock.on('close', () => report());
  });

  let conns = 0;
  const netServer = net.createServer({ allowHalfOpen: true }, (raw) => {
    const conn = ++conns;
    const tap = new Tap(raw, 'server', conn, cfg.tap !== false);
    tap.on('error', () => {}); // reported through the TLS socket
    // an EOF before the handshake completes destroys the tap; Node then reports it through tlsClientError
    raw.on('close', () => emit({ event: 'closed', conn, side: 'server' }));
    server.emit('connection', tap);
  });
  netServer.on('error', (err) => {
    emit(errorEvent(err, { side: 'server', phase: 'listen' }));
    process.exit(1);
  });
  netServer.listen(cfg.port || 0, host, () => {
    emit({ event: 'listening', port: netServer.address().port, host });
  });
  const stop = () => {
    netServer.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ---------------------------------------------------------------------------------------------------------------
// Client

function clientOnce(cfg, attempt, session, payload) {
  return new Promise((resolve) => {
    const host = cfg.host || '127.0.0.1';
    const servername = cfg.servername !== undefined ? cfg.servername : net.isIP(host) ? undefined : host;
    const state = { session: null, error: false, done: false };
    let sock = null;
    let handshaken = false;
    const finish = () => {
      if (state.done) return;
      state.done = true;
      emit({ event: 'closed', conn: attempt, side: 'client' });
      resolve(state);
    };
    const port = Array.isArray(cfg.ports) && cfg.ports.length ? cfg.ports[(attempt - 1) % cfg.ports.length] : cfg.port;
    const raw = net.connect({ host, port, allowHalfOpen: true });
    raw.on('error', (err) => {
      if (sock === null) {
        state.error = true;
        emit(errorEvent(err, { conn: attempt, side: 'client', phase: 'connect' }));
        finish();
      }
    });
    raw.on('close', () => {
      if (sock === null) finish();
    });
    raw.on('connect', () => {
      const tap = new Tap(raw, 'client', attempt, cfg.tap !== false);
      tap.on('error', () => {});
      tap.onEarlyEof = () => {
        if (state.error) return;
        state.error = true;
        emit({
          event: 'error', conn: attempt, side: 'client', phase: 'handshake', code: 'ECONNRESET',
          message: 'the server closed the connection before the handshake completed', hrr: tap.hrr,
        });
      };
      const opts = {
        ...contextOptions(cfg),
        socket: tap,
        allowHalfOpen: true,
        servername,
        rejectUnauthorized: cfg.rejectUnauthorized === undefined ? true : Boolean(cfg.rejectUnauthorized),
      };
      if (session) opts.session = session;
      sock = tls.connect(opts);
      if (cfg.trace) sock.enableTrace();
      sock.on('keylog', onKeylogLine);
      sock.on('session', (s) => {
        state.session = s;
      });
      const hash = crypto.createHash('sha256');
      let length = 0;
      const textParts = [];
      let reported = false;
      const report = () => {
        if (reported || !handshaken) return;
        reported = true;
        const ev = {
          event: 'result', conn: attempt, side: 'client', length, sha256: hash.digest('hex'),
          sent_length: payload.data.length, sent_sha256: payload.sha256,
        };
        ev.text = null;
        if (length <= 65536) {
          try {
            ev.text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(textParts));
          } catch (_) {
            ev.text = null; // not UTF-8: only the hash is reported
          }
        }
        emit(ev);
      };
      let ended = false;
      const endOnce = () => {
        if (!ended) {
          ended = true;
          sock.end();
        }
      };
      let written = 0;
      const writeChunk = () => {
        if (written < payload.data.length) {
          const end = Math.min(written + payload.chunk, payload.data.length);
          sock.write(payload.data.subarray(written, end));
          written = end;
        }
        if (written >= payload.data.length && (payload.halfClose || payload.expect === 0)) endOnce();
      };
      sock.on('secureConnect', () => {
        handshaken = true;
        tap.established = true;
        tap.pump();
        if (cfg.maxSendFragment) sock.setMaxSendFragment(cfg.maxSendFragment);
        emit(handshakeEvent(sock, 'client', attempt, tap, { servername: servername || null }));
        if (payload.chunk > 0) writeChunk();
        else {
          if (payload.data.length > 0) sock.write(payload.data);
          if (payload.halfClose || payload.expect === 0) endOnce();
        }
      });
      sock.on('data', (d) => {
        hash.update(d);
        length += d.length;
        if (length <= 65536) textParts.push(Buffer.from(d));
        if (payload.chunk > 0 && written < payload.data.length && length >= written) writeChunk();
        if (!payload.halfClose && length >= payload.expect) endOnce();
      });
      sock.on('end', () => {
        report();
        endOnce();
      });
      sock.on('error', (err) => {
        state.error = true;
        emit(errorEvent(err, { conn: attempt, side: 'client', phase: handshaken ? 'data' : 'handshake' }));
      });
      sock.on('close', () => {
        tap.pump();
        report();
        finish();
      });
    });
  });
}

async function runClient(cfg) {
  let data = Buffer.alloc(0);
  let halfClose = Boolean(cfg.halfClose);
  if (cfg.sendFile) data = fs.readFileSync(cfg.sendFile);
  else if (cfg.sendThenHash !== undefined) {
    data = deterministicBytes(Number(cfg.sendThenHash), cfg.seed || 'pqproxy');
    halfClose = true;
  } else if (cfg.send !== undefined) data = deterministicBytes(Number(cfg.send), cfg.seed || 'pqproxy');
  const payload = {
    data,
    halfClose,
    expect: cfg.expect !== undefined ? Number(cfg.expect) : data.length,
    chunk: cfg.chunk !== undefined ? Number(cfg.chunk) : 0,
    sha256: crypto.createHash('sha256').update(data).digest('hex'),
  };
  const timeout = cfg.timeout !== undefined ? Number(cfg.timeout) : 30000;
  const timer = setTimeout(() => {
    emit({ event: 'error', side: 'client', code: 'ETIMEDOUT', message: `client did not finish within ${timeout} ms` });
    process.exit(1);
  }, timeout);
  const attempts = (Number(cfg.reconnect) || 0) + 1;
  let session = null;
  let failed = false;
  for (let i = 0; i < attempts; i++) {
    const st = await clientOnce(cfg, i + 1, session, payload);
    if (st.error) {
      failed = true;
      break;
    }
    if (st.session) session = st.session;
  }
  clearTimeout(timer);
  process.exitCode = failed ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------------

const KNOWN = new Set([
  'mode', 'host', 'port', 'groups', 'ciphers', 'sigalgs', 'cert', 'key', 'ca', 'servername', 'alpn',
  'requestCert', 'rejectUnauthorized', 'minVersion', 'maxVersion', 'sessionTickets', 'sessionTimeout',
  'reconnect', 'ports', 'echo', 'hashOnly', 'behaviour', 'send', 'sendFile', 'sendThenHash', 'halfClose', 'expect', 'chunk',
  'seed', 'timeout', 'maxSendFragment', 'keylogFile', 'trace', 'tap',
]);

function main() {
  let cfg;
  try {
    cfg = JSON.parse(process.argv[2] || '');
  } catch (e) {
    emit({ event: 'error', code: 'EBADCONFIG', message: 'argv[2] must be a JSON object: ' + e.message });
    process.exitCode = 2;
    return;
  }
  const problems = [];
  if (!cfg || typeof cfg !== 'object') problems.push('config must be an object');
  else {
    for (const k of Object.keys(cfg)) {
      if (k === 'keyUpdate') problems.push('keyUpdate: Node 26 has no API to send a TLS 1.3 KeyUpdate');
      else if (!KNOWN.has(k)) problems.push(`unknown option ${k}`);
    }
    if (cfg.mode !== 'server' && cfg.mode !== 'client') problems.push('mode must be "server" or "client"');
    if (cfg.port === undefined) problems.push('port is required');
    if (cfg.mode === 'server' && !(cfg.cert && cfg.key)) problems.push('a server needs cert and key');
    if (cfg.behaviour !== undefined && !['echo', 'hashOnly', 'close'].includes(cfg.behaviour)) {
      problems.push('behaviour must be echo, hashOnly or close');
    }
  }
  if (problems.length) {
    emit({ event: 'error', code: 'EBADCONFIG', message: problems.join('; ') });
    process.exitCode = 2;
    return;
  }
  if (cfg.keylogFile) keylogFd = fs.openSync(cfg.keylogFile, 'a');
  try {
    if (cfg.mode === 'server') runServer(cfg);
    else {
      runClient(cfg).catch((e) => {
        emit(errorEvent(e, { side: 'client', phase: 'internal' }));
        process.exitCode = 1;
      });
    }
  } catch (e) {
    emit(errorEvent(e, { side: cfg.mode, phase: 'setup' }));
    process.exitCode = cfg.mode === 'client' ? 1 : 2;
  }
}

process.on('uncaughtException', (e) => {
  emit(errorEvent(e, { phase: 'uncaught' }));
  process.exit(1);
});
process.on('unhandledRejection', (e) => {
  emit(errorEvent(e, { phase: 'unhandled' }));
  process.exit(1);
});

main();
