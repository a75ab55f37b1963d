"""The KME simulator: the ETSI GS QKD 014 API over mutual TLS, for the KMEs of two sites joined by a
simulated QKD link (``pqproxy.qkd.link``).

Theory of operation
-------------------
``KeyStore`` is the state, with no I/O: for every ordered pair of configured SAEs (master, slave) a pool
of secret bits that the link fills at its key rate (as the KMEs of both sites would, after error
correction and privacy amplification), and the keys handed to a master that its slave has not fetched
yet. ``enc_keys`` turns pool bits into keys (random material, as QKD's output is), ``dec_keys`` hands each
key to the slave once and forgets it. The standard leaves KME-to-KME sync out of scope; one process plays
both KMEs, so they agree by construction.

``KMEServer`` is the HTTP edge (``pqproxy.http11``): TLS with a required client certificate issued by the
KME's CA; the SAE is the certificate's CN. An SAE may only ask for keys as itself: a key meant for
another SAE is 401, an unknown or already delivered key_ID is 400, an empty pool or a link that is down
is 503 (ETSI 014 has no code for "no keys left"; real KMEs answer 503). The OpenAPI description is at
``/api/v1/openapi.json``.

``ControlServer`` is a plain HTTP endpoint for the simulation itself (loopback only): ``GET /link``
reads the link, ``POST /eavesdropper {"fraction": F}`` switches intercept-resend on or off, and ``POST
/misbehave {"answer": "garbage"}`` makes the API answer every key request with 200 and a body that is not JSON
(``"answer": "normal"`` ends it): a KME that lies, for fault injection (``benchmarks/soak.py``).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

import h11
import trio
from pydantic import BaseModel, ValidationError

from ..http11 import HTTPServer, Response, open_listeners
from . import etsi014
from .etsi014 import API, Key, KeyContainer, KeyIDs, KeyRequest, Status
from .link import UP, Link

log = logging.getLogger("pqproxy.kme")
JSON = "application/json"
DEFAULT_KEY_SIZE = 256
MIN_KEY_SIZE, MAX_KEY_SIZE = 64, etsi014.MAX_KEY_BITS
MAX_KEY_COUNT = 1000  # keys a pool can hold (the status' max_key_count)
PENDING_TTL = 300.0  # seconds a key handed to a master waits for its slave, then it is destroyed
MAX_BODY = 16 * 1024
READ_TIMEOUT, SEND_TIMEOUT, MAX_CONNECTIONS = 10.0, 10.0, 256


class KMEFault(Exception):
    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


def requested_size(request: KeyRequest, default: int) -> int:
    """The key size an enc_keys request asks for, in bits; KMEFault 400 for what this KME does not serve."""
    size = request.size or default
    if size % 8 or not MIN_KEY_SIZE <= size <= MAX_KEY_SIZE:
        raise KMEFault(400, f"size must be a multiple of 8 between {MIN_KEY_SIZE} and {MAX_KEY_SIZE}")
    if request.additional_slave_SAE_IDs:
        raise KMEFault(400, "additional_slave_SAE_IDs is not supported by this KME")
    if request.extension_mandatory:
        raise KMEFault(400, "no mandatory extension is supported", extension_mandatory="not supported")
    return size


@dataclass
class _Pending:
    master: str
    slave: str
    material: bytearray
    created: float


@dataclass
class KeyStore:
    saes: Sequence[str]
    link: Link
    key_size: int = DEFAULT_KEY_SIZE
    max_key_count: int = MAX_KEY_COUNT
    kme_ids: tuple[str, str] = ("KME_A", "KME_B")
    clock: Callable[[], float] = time.monotonic
    entropy: Callable[[int], bytes] = os.urandom
    initial_keys: int | None = None  # keys each pool holds at the start (None: full, a KME that has been running)
    pools: dict[tuple[str, str], float] = field(default_factory=dict)
    pending: OrderedDict[str, _Pending] = field(default_factory=OrderedDict)
    delivered: int = 0
    misbehaving: str = "normal"  # "garbage": key requests get 200 and a body that is not JSON (ControlServer)

    def __post_init__(self) -> None:
        self.saes = tuple(self.saes)
        start = self.max_key_count if self.initial_keys is None else min(self.initial_keys, self.max_key_count)
        for pair in itertools.permutations(self.saes, 2):
            self.pools[pair] = float(start * self.key_size)

    def _refill(self) -> None:
        now = self.clock()
        bits = self.link.accrue(now)
        cap = float(self.max_key_count * self.key_size)
        for pair in self.pools:
            self.pools[pair] = min(cap, self.pools[pair] + bits)
        while self.pending:
            key_id, oldest = next(iter(self.pending.items()))
            if now - oldest.created <= PENDING_TTL:
                break
            self._forget(key_id)

    def _forget(self, key_id: str) -> None:
        entry = self.pending.pop(key_id)
        entry.material[:] = bytes(len(entry.material))

    def _pair(self, master: str, slave: str) -> tuple[str, str]:
        if slave not in self.saes:
            raise KMEFault(400, f"unknown SAE {slave!r}")
        if master == slave:
            raise KMEFault(400, "an SAE cannot share keys with itself")
        return master, slave

    def status(self, master: str, slave: str) -> Status:
        pair = self._pair(master, slave)
        self._refill()
        reading = self.link.read(self.clock())
        return Status(
            source_KME_ID=self.kme_ids[0], target_KME_ID=self.kme_ids[1], master_SAE_ID=master, slave_SAE_ID=slave,
            key_size=self.key_size, stored_key_count=int(self.pools[pair] // self.key_size),
            max_key_count=self.max_key_count, max_key_per_request=etsi014.MAX_KEYS_PER_REQUEST,
            max_key_size=MAX_KEY_SIZE, min_key_size=MIN_KEY_SIZE, max_SAE_ID_count=0,
            status_extension={"qber": round(reading.qber, 6), "key_rate_bps": round(reading.key_rate_bps, 1),
                              "link_state": reading.state, "eavesdropper": self.link.eavesdropper,
                              "length_km": self.link.parameters.length_km,
                              "disturbances": self.link.disturbances})

    def enc_keys(self, master: str, slave: str, request: KeyRequest) -> KeyContainer:
        pair = self._pair(master, slave)
        size = requested_size(request, self.key_size)
        self._refill()
        reading = self.link.read(self.clock())
        if self.pools[pair] < size * request.number:
            raise KMEFault(503, "no keys available", link_state=reading.state, qber=round(reading.qber, 6),
                           stored_bits=int(self.pools[pair]))
        self.pools[pair] -= size * request.number
        keys = []
        for _ in range(request.number):
            key_id = str(uuid.UUID(bytes=self.entropy(16), version=4))
            material = bytearray(self.entropy(size // 8))
            self.pending[key_id] = _Pending(master, slave, material, self.clock())
            keys.append(Key(key_ID=key_id, key=_b64(material)))
        while len(self.pending) > self.max_key_count * max(1, len(self.pools)):
            self._forget(next(iter(self.pending)))
        return KeyContainer(keys=keys)

    def dec_keys(self, slave: str, master: str, ids: Sequence[str]) -> KeyContainer:
        self._pair(slave, master)
        self._refill()
        for key_id in ids:
            entry = self.pending.get(key_id)
            if entry is None:
                raise KMEFault(400, "key_ID not found (unknown, expired, or already delivered)", key_ID=key_id)
            if entry.slave != slave or entry.master != master:
                raise KMEFault(401, "this key_ID is not meant for this SAE", key_ID=key_id)
        keys = [Key(key_ID=key_id, key=_b64(self.pending[key_id].material)) for key_id in ids]
        for key_id in ids:
            self._forget(key_id)
        self.delivered += len(ids)
        return KeyContainer(keys=keys)


def _b64(material: bytearray) -> str:
    return base64.b64encode(material).decode("ascii")


def _json(status: int, body: Any) -> Response:
    data = body.model_dump_json(exclude_none=True) if isinstance(body, BaseModel) else json.dumps(body)
    return Response(status, data.encode(), JSON)


def _error(status: int, message: str, **details: Any) -> Response:
    return _json(status, {"message": message, **({"details": [details]} if details else {})})


def server_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """TLS 1.2+ with a client certificate from the KME's CA required (ETSI 014 mandates mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _common_name(stream: trio.SSLStream[Any]) -> str | None:
    cert = stream.getpeercert()
    for rdn in (cert or {}).get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName":
                return str(value)
    return None


class KeyService(Protocol):
    """What the API serves: one link's ``KeyStore``, or one site of a network (``network.SiteStore``)."""

    misbehaving: str

    @property
    def saes(self) -> Sequence[str]: ...  # the SAEs that may call this KME

    def status(self, master: str, slave: str) -> Status: ...
    def enc_keys(self, master: str, slave: str, request: KeyRequest) -> KeyContainer: ...
    def dec_keys(self, slave: str, master: str, ids: Sequence[str]) -> KeyContainer: ...


class KMEServer(HTTPServer):
    def __init__(self, store: KeyService, context: ssl.SSLContext) -> None:
        async def wrap(tcp: trio.SocketStream) -> trio.SSLStream[Any]:
            stream = trio.SSLStream(tcp, context, server_side=True)
            await stream.do_handshake()
            return stream

        super().__init__(read_timeout=READ_TIMEOUT, send_timeout=SEND_TIMEOUT, max_connections=MAX_CONNECTIONS,
                         max_head=8 * 1024, max_body=MAX_BODY, wrap=wrap)
        self.store = store
        self.requests = 0

    async def respond(self, request: h11.Request, body: bytes, stream: Any) -> Response:
        self.requests += 1
        target = request.target.decode("ascii", "replace")
        path, _, query = target.partition("?")
        if path == f"{API.rsplit('/', 1)[0]}/openapi.json" or path == "/openapi.json":
            return _json(200, etsi014.openapi(self.store.saes))
        caller = _common_name(stream)
        if caller is None or caller not in self.store.saes:
            return _error(401, "the client certificate names no SAE of this KME")
        parts = path.split("/")
        if len(parts) != 6 or "/".join(parts[:4]) != API or parts[5] not in ("status", "enc_keys", "dec_keys"):
            return _error(404, "not found")
        sae, verb = unquote(parts[4]), parts[5]
        if self.store.misbehaving == "garbage":
            return Response(200, b"\x00{garbage, not the key container you asked for", JSON)
        if not 0 < len(sae) <= etsi014.MAX_SAE_ID:
            return _error(400, "bad SAE_ID")
        method = request.method.decode("ascii", "replace")
        allowed = ("GET",) if verb == "status" else ("GET", "POST")
        if method not in allowed:
            return Response(405, b"", JSON, extra_headers=((b"allow", ", ".join(allowed).encode()),))
        try:
            if verb == "status":
                return _json(200, self.store.status(caller, sae))
            if verb == "enc_keys":
                key_request = self._key_request(method, query, body)
                return _json(200, self.store.enc_keys(caller, sae, key_request))
            ids = self._key_ids(method, query, body)
            return _json(200, self.store.dec_keys(caller, sae, ids))
        except KMEFault as fault:
            return _error(fault.status, str(fault), **fault.details)
        except ValidationError as exc:
            return _error(400, "bad request format", errors=_errors(exc))

    @staticmethod
    def _key_request(method: str, query: str, body: bytes) -> KeyRequest:
        if method == "POST":
            return KeyRequest.model_validate_json(body or b"{}")
        args = _query(query, 8)
        fields: dict[str, Any] = {}
        for name in ("number", "size"):
            if name in args:
                fields[name] = args[name][-1]
        return KeyRequest.model_validate(fields)

    @staticmethod
    def _key_ids(method: str, query: str, body: bytes) -> list[str]:
        if method == "POST":
            return [ref.key_ID for ref in KeyIDs.model_validate_json(body or b"{}").key_IDs]
        ids = _query(query, etsi014.MAX_KEYS_PER_REQUEST).get("key_ID", [])
        return [ref.key_ID for ref in KeyIDs.model_validate({"key_IDs": [{"key_ID": i} for i in ids]}).key_IDs]


def _query(query: str, max_fields: int) -> dict[str, list[str]]:
    try:
        return parse_qs(query, max_num_fields=max_fields, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:  # too many fields, or not UTF-8
        raise KMEFault(400, f"bad query string: {exc}") from None


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]


class ControlServer(HTTPServer):
    """The simulation's own knobs, on loopback: read the link, switch the eavesdropper."""

    def __init__(self, store: KeyStore) -> None:
        super().__init__(read_timeout=READ_TIMEOUT, send_timeout=SEND_TIMEOUT, max_connections=16,
                         max_head=4 * 1024, max_body=1024)
        self.store = store

    async def respond(self, request: h11.Request, body: bytes, stream: Any) -> Response:
        path = request.target.split(b"?", 1)[0]
        link = self.store.link
        if path == b"/eavesdropper" and request.method == b"POST":
            try:
                fraction = float(json.loads(body or b"{}")["fraction"])
                link.set_eavesdropper(fraction, self.store.clock())
            except (ValueError, KeyError, TypeError) as exc:
                return _error(400, f"expected {{\"fraction\": 0..1}}: {exc}")
            log.info(json.dumps({"event": "eavesdropper", "fraction": fraction}))
        elif path == b"/misbehave" and request.method == b"POST":
            try:
                answer = json.loads(body or b"{}")["answer"]
                if answer not in ("normal", "garbage"):
                    raise ValueError(answer)
            except (ValueError, KeyError, TypeError) as exc:
                return _error(400, f"expected {{\"answer\": \"normal\" | \"garbage\"}}: {exc}")
            self.store.misbehaving = answer
            log.info(json.dumps({"event": "misbehave", "answer": answer}))
        elif not (path == b"/link" and request.method == b"GET"):
            return _error(404, "GET /link, POST /eavesdropper, POST /misbehave")
        reading = link.read(self.store.clock())
        return _json(200, {"qber": reading.qber, "key_rate_bps": reading.key_rate_bps, "link_state": reading.state,
                           "eavesdropper": link.eavesdropper, "disturbances": link.disturbances,
                           "up": reading.state == UP, "keys_delivered": self.store.delivered,
                           "answer": self.store.misbehaving})


async def serve_kme(host: str, port: int, store: KeyStore, context: ssl.SSLContext, *,
                    control: tuple[str, int] | None = None,
                    task_status: trio.TaskStatus[dict[str, tuple[str, int]]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the KME (and its control endpoint) until cancelled; reports the bound addresses."""
    async with trio.open_nursery() as nursery:
        listeners = await open_listeners(host, port)
        bound = {"kme": listeners[0].socket.getsockname()[:2]}
        await nursery.start(trio.serve_listeners, KMEServer(store, context).handle, listeners)
        if control is not None:
            control_listeners = await open_listeners(*control)
            bound["control"] = control_listeners[0].socket.getsockname()[:2]
            await nursery.start(trio.serve_listeners, ControlServer(store).handle, control_listeners)
        task_status.started(bound)
