"""The sidecar's QKD edge: one per worker, between the connections and the key source.

Client sidecar (the ETSI 014 master): ``client_config`` asks the KME for a new key for the server's SAE
and returns the connection's TLS configuration with it as an RFC 9258 imported external PSK (identity:
our SAE ID and the key_ID), and RFC 8773 so the server still shows its certificate. After the
handshake, ``after_handshake`` checks that the server took the key (on both sides: that it was used).

Server sidecar (the slave): ``server_config`` reads the ClientHello the caller peeked, finds our PSK
identity, refuses a key_ID it has seen before, asks the KME for that key (``dec_keys``) and returns the
TLS configuration that accepts it; the engine then checks the binder. With ``require`` the engine
refuses any handshake without it (``unknown_psk_identity``).

Policy on both sides: ``off``; ``prefer``: no key (no identity offered, KME down, key refused) means the
handshake goes on hybrid-only and is counted as degraded; ``require``: the connection is refused, with
the reason in the log line and the refusal metric. The key's bytes live in the connection's TLS
configuration only; the bytearray they came in is zeroed at once; key_IDs are logged, keys never.

Across reloads (``QKDEdges``): every configuration a worker runs gets its own edge, so a SIGHUP reads the KME
certificate files again; the edge of the configuration before is retired, its link poll stopped at once and
its KME client closed once no handshake begun under it can still ask the KME. The replay guard is the
worker's, not an edge's: a key_ID accepted before a reload is still a replay after it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..qkd.binding import QKDIdentity, ReplayGuard, offered_qkd_identity
from ..qkd.client import KMEError, KMESettings
from ..qkd.keysource import ETSI014KeySource, KeySource, QKDKey, StaticKeySource
from ..tls.client_hello import ClientHelloInfo
from ..tls.config import ExternalPSK, TLSConfig
from .config import QKDSettings

log = logging.getLogger("pqproxy")
logging.getLogger("httpx").setLevel(logging.WARNING)  # its per-request INFO lines are not our log format


@dataclass
class QKDOutcome:
    """What QKD did for one connection (the log line's ``qkd``, ``qkd_key_id``, ``qkd_error``)."""

    state: str  # "keyed", "degraded", "refused"
    key_id: str | None = None
    error: str | None = None


class QKDRefused(Exception):
    """``require`` and no key: the connection must not go on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class QKDEdge:
    def __init__(self, settings: QKDSettings, metrics: Any, replays: ReplayGuard | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.replays = replays if replays is not None else ReplayGuard()
        self._source: KeySource | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.mode != "off"

    def source(self) -> KeySource:
        if self._source is None:
            s = self.settings
            assert s.sae_id is not None
            if s.key_file:
                self._source = StaticKeySource(s.sae_id, s.key_file)
            else:
                assert s.kme and s.cert and s.key and s.ca
                self._source = ETSI014KeySource(
                    s.sae_id, KMESettings(s.kme, s.cert, s.key, s.ca, timeout=s.timeout, budget=s.budget),
                    observe=self.metrics.kme_request)
        return self._source

    async def aclose(self) -> None:
        if self._source is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self._source.aclose()

    def _without_key(self, reason: str, message: str, *, engine_refuses: bool = False) -> QKDOutcome:
        """No key for this connection: refuse (require) or carry on degraded (prefer). ``engine_refuses``:
        the TLS engine will refuse the handshake itself (with an alert), so say so rather than raise."""
        self.metrics.qkd_key(reason)
        if self.settings.mode == "require":
            if engine_refuses:
                return QKDOutcome("refused", error=f"{reason}: {message}")
            raise QKDRefused(reason, message)
        self.metrics.qkd_degraded()
        return QKDOutcome("degraded", error=f"{reason}: {message}")

    # --- client sidecar -------------------------------------------------------------------------

    async def client_config(self, base: TLSConfig) -> tuple[TLSConfig, QKDOutcome]:
        assert self.settings.peer is not None and self.settings.sae_id is not None
        key: QKDKey | None = None
        try:
            with trio.fail_after(self.settings.budget + 1):
                key = await self.source().new_key(self.settings.peer)
        except KMEError as exc:
            return base, self._without_key("kme_" + exc.kind, str(exc))
        except trio.TooSlowError:
            return base, self._without_key("kme_timeout", "the key source did not answer in time")
        try:
            identity = QKDIdentity(self.settings.sae_id, key.key_id).encode()
        except ValueError:
            key.zero()
            return base, self._without_key("kme_bad_response", f"unusable key_ID {key.key_id[:64]!r}")
        psk = ExternalPSK(identity=identity, key=bytes(key.material), imported=True, with_certificate=True)
        key.zero()
        return dataclasses.replace(base, external_psk=psk), QKDOutcome("keyed", key.key_id)

    def after_handshake(self, outcome: QKDOutcome, psk_kind: str | None) -> QKDOutcome:
        """Did the handshake use the key we had (client: did the server take it)? If not, the policy."""
        if outcome.state != "keyed":
            return outcome
        if psk_kind == "external":
            self.metrics.qkd_key("ok")
            return outcome
        return self._without_key("not_accepted", f"QKD key {outcome.key_id} was not used in the handshake")

    # --- server sidecar -------------------------------------------------------------------------

    async def server_config(self, base: TLSConfig, client_hello: ClientHelloInfo) -> tuple[TLSConfig, QKDOutcome]:
        """With ``require`` the returned configuration makes the engine refuse a handshake without the key
        (alert ``unknown_psk_identity``): the outcome then says ``refused`` and why."""
        if self.settings.mode == "require":
            base = dataclasses.replace(base, require_external_psk=True)
        identity = offered_qkd_identity(client_hello.offered_psks)
        if identity is None:
            return base, self._without_key("not_offered", "the client offered no QKD key", engine_refuses=True)
        if self.settings.peer is not None and identity.sae_id != self.settings.peer:
            return base, self._without_key("wrong_sae", f"SAE {identity.sae_id!r} is not our peer",
                                           engine_refuses=True)
        if not self.replays.first_use(identity.key_id):
            log.warning(json.dumps({"event": "qkd_replay", "sae": identity.sae_id, "key_id": identity.key_id}))
            return base, self._without_key("replayed", f"key_ID {identity.key_id} was used before",
                                           engine_refuses=True)
        try:
            with trio.fail_after(self.settings.budget + 1):
                key = await self.source().key_for(identity.sae_id, identity.key_id)
        except KMEError as exc:
            return base, self._without_key("kme_" + exc.kind, str(exc), engine_refuses=True)
        except trio.TooSlowError:
            return base, self._without_key("kme_timeout", "the key source did not answer in time",
                                           engine_refuses=True)
        psks = {identity.encode(): bytes(key.material)}
        key.zero()
        return dataclasses.replace(base, external_psks=psks), QKDOutcome("keyed", identity.key_id)

    # --- link status, for the operator -------------------------------------------------------------

    async def poll_link(self) -> None:
        """Every ``status_interval`` seconds, the KME's view of the link to our peer, into the metrics."""
        peer = self.settings.peer
        if peer is None or self.settings.key_file:
            return
        while True:
            try:
                with trio.fail_after(self.settings.budget + 1):
                    link = await self.source().link(peer)
            except (KMEError, trio.TooSlowError):
                link = None
            self.metrics.qkd_link(peer, link)
            await trio.sleep(self.settings.status_interval)


class QKDEdges:
    """A worker's QKD edges: one for each configuration (runtime) it has run, the current one's polling its link."""

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics
        self.replays = ReplayGuard()
        self._edges: list[tuple[Any, QKDEdge]] = []  # (runtime, its edge), by identity of the runtime
        self._retiring: set[int] = set()  # id() of edges whose close is scheduled
        self._changed = trio.Event()

    def for_runtime(self, runtime: Any) -> QKDEdge | None:
        """The edge of this runtime (made the first time it is asked for), or None when its QKD is off."""
        settings = runtime.settings.qkd
        if settings.mode == "off":
            return None
        for known, edge in self._edges:
            if known is runtime:
                return edge
        edge = QKDEdge(settings, self.metrics, self.replays)
        self._edges.append((runtime, edge))
        return edge

    def runtime_changed(self) -> None:
        self._changed.set()

    async def run(self, current: Callable[[], Any]) -> None:
        """Poll the current runtime's link; on each change of runtime, retire the edges of the others."""
        async with trio.open_nursery() as retiring:
            while True:
                self._changed = trio.Event()
                runtime = current()
                edge = self.for_runtime(runtime)
                for known, old in self._edges:
                    if known is not runtime and id(old) not in self._retiring:
                        self._retiring.add(id(old))
                        retiring.start_soon(self._close_when_unused, known, old)
                async with trio.open_nursery() as polling:
                    if edge is not None:
                        polling.start_soon(edge.poll_link)
                    await self._changed.wait()
                    polling.cancel_scope.cancel()

    async def _close_when_unused(self, runtime: Any, edge: QKDEdge) -> None:
        # A connection takes its runtime's edge as it starts and asks the KME only before its handshake: KME
        # calls (budget), the connect (client mode) and the handshake bound how long an old edge is used.
        limits = runtime.limits
        await trio.sleep(edge.settings.budget + 1 + limits.connect_timeout + limits.handshake_timeout)
        self._edges = [(r, e) for r, e in self._edges if e is not edge]
        self._retiring.discard(id(edge))
        await edge.aclose()
        log.info(json.dumps({"event": "qkd_edge_closed", "kme": edge.settings.kme or edge.settings.key_file}))

    async def aclose(self) -> None:
        for _, edge in self._edges:
            await edge.aclose()
        self._edges.clear()
