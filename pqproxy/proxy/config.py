"""Sidecar configuration: a TOML file and command-line flags, validated into one typed object.

Precedence is defaults < TOML file < flags. Validation names the bad key the way a user wrote it
(``limits.handshake_timeout``, ``routes[1].upstream``) and refuses unknown keys, so a typo is an error
and not a silently ignored setting. ``build_server_runtime`` / ``build_client_runtime`` then load
certificates and make the engine's ``TLSConfig`` objects; SIGHUP builds a new runtime and swaps it in.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..tls.certificates import CertificateChain, load_trust_store
from ..tls.config import DEFAULT_MAX_CLIENT_HELLO, TLSConfig, parse_signature_scheme_list
from ..tls.groups import parse_group_list
from ..tls.key_schedule import cipher_suite_by_name
from ..tls.session import TicketKeys, TicketSealer, TicketStore


class ConfigError(ValueError):
    """A configuration problem, phrased for the person who wrote the configuration."""


def parse_host_port(text: str, *, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """'H:P', '[v6]:P' or ':P' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or default_host
    return host, int(port)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _address(value: str) -> str:
    parse_host_port(value)
    return value


def _groups(value: list[str] | str) -> tuple[int, ...]:
    text = value if isinstance(value, str) else ",".join(value)
    return parse_group_list(text)


def _signature_schemes(value: list[str] | str) -> tuple[int, ...]:
    return parse_signature_scheme_list(value if isinstance(value, str) else ",".join(value))


def _suites(value: list[str] | str) -> tuple[int, ...]:
    names = value.replace(":", ",").split(",") if isinstance(value, str) else value
    return tuple(cipher_suite_by_name(n).code for n in names if n.strip())


def _codes(value: Any, parse: Callable[[Any], tuple[int, ...]]) -> tuple[int, ...] | None:
    """Names (a list or a comma-separated string) to codepoints; codepoints pass through."""
    if value is None or (isinstance(value, tuple) and all(isinstance(c, int) for c in value)):
        return value
    return parse(value)


class Limits(_Strict):
    handshake_timeout: float = Field(10.0, gt=0, le=300)
    idle_timeout: float = Field(300.0, gt=0, le=86400)
    connect_timeout: float = Field(5.0, gt=0, le=300)
    max_connections: int = Field(10000, ge=1, le=1_000_000)
    max_client_hello: int = Field(DEFAULT_MAX_CLIENT_HELLO, ge=4096, le=1 << 20)
    drain_timeout: float = Field(30.0, ge=0, le=3600)


class Route(_Strict):
    """SNI routing: a server name (exact, or ``*.example.com``) to its own upstream and certificate."""

    sni: str
    upstream: str
    cert: str | None = None
    key: str | None = None

    _upstream = field_validator("upstream")(lambda cls, v: _address(v))

    @field_validator("sni")
    @classmethod
    def _sni(cls, value: str) -> str:
        name = value.strip().lower().rstrip(".")
        label = name[2:] if name.startswith("*.") else name
        if not label or any(not part or len(part) > 63 for part in label.split(".")) or "*" in label:
            raise ValueError(f"not a host name or *.wildcard: {value!r}")
        return name

    @model_validator(mode="after")
    def _pair(self) -> Route:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        return self


class QKDSettings(_Strict):
    """QKD keying (DESIGN.md "QKD binding"): where the keys come from, and what happens without one."""

    mode: Literal["off", "prefer", "require"] = "off"
    kme: str | None = None  # https://host:port of our KME (ETSI GS QKD 014)
    sae_id: str | None = None  # our SAE ID (the CN of our certificate at the KME)
    peer: str | None = None  # client: the server's SAE ID; server: the only client SAE accepted (None: any)
    cert: str | None = None  # our SAE certificate and key, for mutual TLS to the KME
    key: str | None = None
    ca: str | None = None  # the KME's CA
    key_file: str | None = None  # instead of a KME: a static key file (tests, links keyed by hand)
    timeout: float = Field(2.0, gt=0, le=30)  # one KME call
    budget: float = Field(4.0, gt=0, le=60)  # a KME call and its retries
    status_interval: float = Field(5.0, ge=0.5, le=3600)  # seconds between link status polls (metrics)

    @model_validator(mode="after")
    def _complete(self) -> QKDSettings:
        from ..qkd.binding import valid_sae_id

        if self.mode == "off":
            return self
        if not self.sae_id or not valid_sae_id(self.sae_id):
            raise ValueError("qkd needs sae_id (1-128 of A-Z a-z 0-9 . _ -)")
        if self.peer is not None and not valid_sae_id(self.peer):
            raise ValueError("qkd peer: 1-128 of A-Z a-z 0-9 . _ -")
        if self.key_file is None:
            missing = [k for k in ("kme", "cert", "key", "ca") if not getattr(self, k)]
            if missing:
                raise ValueError(f"qkd needs {', '.join(missing)} (or key_file)")
            if not str(self.kme).startswith("https://"):
                raise ValueError("qkd kme must be an https:// URL (ETSI GS QKD 014 runs over TLS)")
        return self


class ListenerSettings(_Strict):
    """One server-mode listener. Top-level keys of the file are the first listener's defaults."""

    listen: str
    upstream: str | None = None
    cert: str | None = None
    key: str | None = None
    groups: tuple[int, ...] | None = None
    ciphers: tuple[int, ...] | None = None
    signature_algorithms: tuple[int, ...] | None = None  # None: ML-DSA only with an ML-DSA key in sight
    alpn: tuple[str, ...] = ()
    require_hybrid: bool = False
    client_ca: str | None = None
    verify_profile: Literal["rfc5280", "webpki"] = "rfc5280"  # the rules client certificates are held to
    allowed_names: tuple[str, ...] = ()
    proxy_protocol: bool = False
    legacy_tls12: bool = False
    # When the upstream is connected: once the handshake is done (as ghostunnel and Envoy's default do), or
    # only once the client sends its first bytes (as Envoy's delayed upstream connect can): a client that
    # handshakes and says nothing then costs no upstream connection. Never for protocols where the server
    # speaks first (SMTP, MySQL, SSH banners): they would wait forever.
    upstream_connect: Literal["handshake", "first-data"] = "handshake"
    routes: tuple[Route, ...] = ()

    _listen = field_validator("listen")(lambda cls, v: _address(v))

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)

    _groups = field_validator("groups", mode="before")(lambda cls, v: _codes(v, _groups))
    _ciphers = field_validator("ciphers", mode="before")(lambda cls, v: _codes(v, _suites))
    _sigalgs = field_validator("signature_algorithms", mode="before")(lambda cls, v: _codes(v, _signature_schemes))

    @model_validator(mode="after")
    def _complete(self) -> ListenerSettings:
        if self.cert is None or self.key is None:
            raise ValueError("cert and key are required")
        if self.upstream is None and not self.routes:
            raise ValueError("an upstream (or at least one route) is required")
        if self.allowed_names and not self.client_ca:
            raise ValueError("allowed_names needs client_ca (mutual TLS)")
        return self


class ServerSettings(_Strict):
    mode: Literal["server"] = "server"
    listeners: tuple[ListenerSettings, ...]
    qkd: QKDSettings = QKDSettings()
    admin: str | None = None
    workers: int = Field(0, ge=0, le=256)  # 0: one per CPU
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    limits: Limits = Limits()
    # The seed of the session-ticket keys, shared by replicas (ticket_keys.py); None: a random one per supervisor.
    ticket_key_file: str | None = None

    @field_validator("admin")
    @classmethod
    def _admin(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)


class ClientSettings(_Strict):
    mode: Literal["client"] = "client"
    listen: str
    connect: str
    sni: str | None = None
    ca: str | None = None
    verify_profile: Literal["rfc5280", "webpki"] = "rfc5280"  # the rules the server's chain is held to
    insecure: bool = False
    cert: str | None = None
    key: str | None = None
    groups: tuple[int, ...] | None = None
    ciphers: tuple[int, ...] | None = None
    # signature_algorithms to offer. None: every scheme we verify except ML-DSA, which is offered only when a
    # trust anchor or our own certificate has an ML-DSA key (IPS signatures reset hellos that name it).
    signature_algorithms: tuple[int, ...] | None = None
    alpn: tuple[str, ...] = ()
    # When the remote server is connected (and the QKD key fetched): as soon as the application connects,
    # or only once it sends its first bytes, so that the idle connections of an application's pool cost
    # the remote no connection and the KME no key. Never for protocols where the server speaks first.
    remote_connect: Literal["accept", "first-data"] = "accept"
    # Resume sessions with the tickets the remote sends (psk_dhe_ke: still a hybrid key exchange, but no
    # certificate chain to verify), each ticket once. Never with QKD: every connection takes a fresh key.
    resume_sessions: bool = True
    admin: str | None = None
    workers: int = Field(1, ge=0, le=256)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    limits: Limits = Limits()
    qkd: QKDSettings = QKDSettings()

    _addresses = field_validator("listen", "connect")(lambda cls, v: _address(v))

    _groups = field_validator("groups", mode="before")(lambda cls, v: _codes(v, _groups))
    _ciphers = field_validator("ciphers", mode="before")(lambda cls, v: _codes(v, _suites))
    _sigalgs = field_validator("signature_algorithms", mode="before")(lambda cls, v: _codes(v, _signature_schemes))

    @model_validator(mode="after")
    def _trust(self) -> ClientSettings:
        if not self.ca and not self.insecure:
            raise ValueError("ca is required (or insecure = true, for testing only)")
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        if self.qkd.mode != "off" and not self.qkd.peer:
            raise ValueError("qkd needs peer in client mode (the server's SAE ID, whose key to ask for)")
        return self


# --- loading -------------------------------------------------------------------------------------

_LISTENER_KEYS = set(ListenerSettings.model_fields)
_SERVER_TOP_KEYS = {"admin", "workers", "log_level", "limits", "listeners", "mode", "qkd", "ticket_key_file"}
# Flags that set keys of the [qkd] table: --qkd is its mode, --qkd-kme its kme, and so on.
_QKD_FLAGS = {"qkd": "mode", **{f"qkd_{k}": k for k in QKDSettings.model_fields if k != "mode"}}


def _take_qkd_flags(overrides: dict[str, Any], data: dict[str, Any]) -> None:
    qkd = dict(data.get("qkd", {})) if isinstance(data.get("qkd", {}), dict) else data.get("qkd")
    for flag, key in _QKD_FLAGS.items():
        if flag in overrides and isinstance(qkd, dict):
            qkd[key] = overrides.pop(flag)
    if qkd:
        data["qkd"] = qkd


def _format_errors(source: str, exc: ValidationError, listener_rename: Callable[[tuple[Any, ...]], str]) -> str:
    lines = []
    for err in exc.errors():
        where = listener_rename(err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        lines.append(f"{source}: {where}: {message}")
    return "\n".join(lines)


def _loc_name(loc: tuple[Any, ...], first_listener_is_top: bool) -> str:
    parts: list[str] = []
    items = list(loc)
    if first_listener_is_top and len(items) >= 2 and items[0] == "listeners" and items[1] == 0:
        items = items[2:]
    for item in items:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in ("function-after", "function-before") or str(item).startswith("function-"):
            continue
        else:
            parts.append(str(item))
    if items and items[0] == "listeners" and isinstance(items[1] if len(items) > 1 else None, int):
        # [[listeners]] tables count from 1 in the file (the top level is listener 0).
        parts[0] = f"listeners[{items[1] - 1}]"
    return ".".join(parts)


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def server_settings(
    file_data: Mapping[str, Any] | None, flags: Mapping[str, Any], source: str = "config"
) -> ServerSettings:
    """Merge a parsed TOML file (or None) with flags (None values ignored) and validate."""
    data = dict(file_data or {})
    overrides = {k: v for k, v in flags.items() if v is not None and v != () and v is not False}
    _take_qkd_flags(overrides, data)
    top_listener = {k: v for k, v in data.items() if k in _LISTENER_KEYS}
    limits = dict(data.get("limits", {}))
    for key in list(overrides):
        if key in Limits.model_fields:
            limits[key] = overrides.pop(key)
    top_listener.update({k: v for k, v in overrides.items() if k in _LISTENER_KEYS})
    extra_listeners = data.get("listeners", [])
    if not isinstance(extra_listeners, list):
        raise ConfigError(f"{source}: listeners: expected [[listeners]] tables")
    inherited = {k: v for k, v in top_listener.items() if k not in ("listen", "routes")}
    listeners = [top_listener] + [{**inherited, **dict(x)} if isinstance(x, dict) else x for x in extra_listeners]
    unknown = set(data) - _LISTENER_KEYS - _SERVER_TOP_KEYS
    doc: dict[str, Any] = {k: v for k, v in data.items() if k in _SERVER_TOP_KEYS - {"listeners"}}
    doc.update({k: v for k, v in overrides.items() if k in _SERVER_TOP_KEYS})
    doc["limits"] = limits
    doc["listeners"] = listeners
    for key in unknown:
        doc[key] = data[key]  # let validation name it
    try:
        return ServerSettings.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc, lambda loc: _loc_name(loc, True))) from None


def client_settings(
    file_data: Mapping[str, Any] | None, flags: Mapping[str, Any], source: str = "config"
) -> ClientSettings:
    data = dict(file_data or {})
    overrides = {k: v for k, v in flags.items() if v is not None and v != () and v is not False}
    _take_qkd_flags(overrides, data)
    limits = dict(data.get("limits", {}))
    for key in list(overrides):
        if key in Limits.model_fields:
            limits[key] = overrides.pop(key)
    data.update(overrides)
    data["limits"] = limits
    try:
        return ClientSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc, lambda loc: _loc_name(loc, False))) from None


# --- runtime: what connections use ---------------------------------------------------------------


@dataclass(frozen=True)
class ListenerRuntime:
    name: str
    address: tuple[str, int]
    tls: TLSConfig
    upstream: tuple[str, int] | None
    routes: Mapping[str, tuple[str, int]]  # SNI (exact or *.suffix) -> upstream
    proxy_protocol: bool
    legacy_context: Any  # ssl.SSLContext for TLS 1.2 clients, or None to refuse them
    connect_on_first_data: bool  # upstream_connect = "first-data"
    quantum_safe_groups_only: bool
    # The edge must see the ClientHello before the engine answers it: a TLS 1.2 client goes to OpenSSL, or a name
    # may have no route (no default upstream). QKD keying needs it too (the sidecar knows that one).
    reads_client_hello_first: bool = False

    def upstream_for(self, sni: str | None) -> tuple[str, int] | None:
        if sni:
            if sni in self.routes:
                return self.routes[sni]
            _, _, parent = sni.partition(".")
            if parent and f"*.{parent}" in self.routes:
                return self.routes[f"*.{parent}"]
        return self.upstream


@dataclass(frozen=True)
class ServerRuntime:
    settings: ServerSettings
    listeners: tuple[ListenerRuntime, ...]
    limits: Limits


@dataclass(frozen=True)
class ClientRuntime:
    settings: ClientSettings
    address: tuple[str, int]
    target: tuple[str, int]
    tls: TLSConfig
    limits: Limits = field(default_factory=Limits)
    connect_on_first_data: bool = False  # remote_connect = "first-data"
    # resume_sessions: this configuration's tickets (a reload starts with none: its CAs may differ).
    tickets: TicketStore | None = None


def _names_allowed(patterns: tuple[str, ...]) -> Callable[[Any], bool]:
    """mTLS allow-list on the client certificate: subject CN or any DNS SAN, exact or ``*.suffix``."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    wanted = [p.lower() for p in patterns]

    def names(cert: Any) -> list[str]:
        out = [a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
               if isinstance(a.value, str)]
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            out += [n.lower() for n in san.get_values_for_type(x509.DNSName)]
        except x509.ExtensionNotFound:
            pass
        return out

    def allowed(cert: Any) -> bool:
        for name in names(cert):
            for pattern in wanted:
                if pattern == name or (pattern.startswith("*.") and name.endswith(pattern[1:])
                                       and "." not in name[: -len(pattern) + 1]):
                    return True
        return False

    return allowed


def _load_chain(cert: str, key: str, where: str) -> CertificateChain:
    try:
        return CertificateChain.load(cert, key)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _ticket_context(trust: list[Any] | None, allowed_names: tuple[str, ...], qkd_mode: str,
                    verify_profile: str) -> bytes:
    """What a listener's session tickets are bound to (``TLSConfig.ticket_context``): everything that decides
    who may connect. All listeners share the workers' ticket keys, and a resumed session skips the client
    certificate, so a ticket from a listener (or a configuration before a reload) with a weaker policy must
    not resume under a stronger one. The same policy gives the same context: tickets survive a reload that
    leaves it alone."""
    from cryptography.hazmat.primitives.serialization import Encoding

    digest = hashlib.sha256(b"pqproxy ticket context 1")
    parts = [b"ca", *(cert.public_bytes(Encoding.DER) for cert in trust or ()),
             b"names", *(name.lower().encode() for name in sorted(allowed_names)), b"qkd", qkd_mode.encode(),
             b"profile", verify_profile.encode()]
    for part in parts:
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.digest()


def build_server_runtime(settings: ServerSettings,
                         ticket_keys: list[bytes] | TicketKeys | None = None) -> ServerRuntime:
    """Load every certificate and CA and make the engine configurations. Raises ConfigError."""
    if settings.ticket_key_file:
        from .ticket_keys import TicketKeyFileError, shared_ticket_keys

        try:
            ticket_keys = shared_ticket_keys(settings.ticket_key_file)
        except TicketKeyFileError as exc:
            raise ConfigError(str(exc)) from None
    sealer = TicketSealer(ticket_keys)
    built = []
    for index, listener in enumerate(settings.listeners):
        where = "listener" if index == 0 else f"listeners[{index - 1}]"
        assert listener.cert is not None and listener.key is not None
        chain = _load_chain(listener.cert, listener.key, where)
        sni_chains = {}
        routes = {}
        for r_index, route in enumerate(listener.routes):
            routes[route.sni] = parse_host_port(route.upstream)
            if route.cert and route.key:
                sni_chains[route.sni] = _load_chain(route.cert, route.key, f"{where}.routes[{r_index}]")
        trust = None
        if listener.client_ca:
            try:
                trust = load_trust_store(listener.client_ca)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{where}.client_ca: {exc}") from None
        kwargs: dict[str, Any] = {}
        if listener.groups:
            kwargs["groups"] = listener.groups
        if listener.ciphers:
            kwargs["cipher_suites"] = listener.ciphers
        if listener.signature_algorithms:
            kwargs["signature_schemes"] = listener.signature_algorithms
        tls = TLSConfig(
            certificate_chain=chain, sni_certificates=sni_chains, trust_store=trust,
            require_client_certificate=trust is not None,
            client_certificate_allowed=_names_allowed(listener.allowed_names) if listener.allowed_names else None,
            require_post_quantum=listener.require_hybrid, alpn_protocols=tuple(a.encode() for a in listener.alpn),
            max_client_hello_size=settings.limits.max_client_hello, ticket_sealer=sealer,
            verify_profile=listener.verify_profile,
            ticket_context=_ticket_context(trust, listener.allowed_names, settings.qkd.mode, listener.verify_profile),
            **kwargs,
        )
        legacy = None
        if listener.legacy_tls12:
            from .legacy import legacy_context

            try:
                legacy = legacy_context(listener.cert, listener.key, listener.client_ca)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                # e.g. an ML-DSA certificate, which TLS 1.2 (and the ssl module's OpenSSL) cannot use: this
                # escaped as a traceback (exit 1 at start, a dead supervisor on SIGHUP) instead of exit 2.
                raise ConfigError(f"{where}.legacy_tls12: OpenSSL cannot serve TLS 1.2 with {listener.cert}: "
                                  f"{exc}") from None
        host, port = parse_host_port(listener.listen)
        built.append(ListenerRuntime(
            name=f"{host}:{port}", address=(host, port), tls=tls,
            upstream=parse_host_port(listener.upstream) if listener.upstream else None, routes=routes,
            proxy_protocol=listener.proxy_protocol, legacy_context=legacy,
            connect_on_first_data=listener.upstream_connect == "first-data",
            quantum_safe_groups_only=listener.require_hybrid,
            reads_client_hello_first=legacy is not None or listener.upstream is None,
        ))
    return ServerRuntime(settings, tuple(built), settings.limits)


def build_client_runtime(settings: ClientSettings) -> ClientRuntime:
    trust = None
    if settings.ca:
        try:
            trust = load_trust_store(settings.ca)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"ca: {exc}") from None
    chain = _load_chain(settings.cert, settings.key, "cert") if settings.cert and settings.key else None
    target = parse_host_port(settings.connect)
    kwargs: dict[str, Any] = {}
    if settings.groups:
        kwargs["groups"] = settings.groups
    if settings.ciphers:
        kwargs["cipher_suites"] = settings.ciphers
    if settings.signature_algorithms:
        kwargs["signature_schemes"] = settings.signature_algorithms
    tls = TLSConfig(
        server_name=settings.sni or target[0], trust_store=trust, verify_peer=not settings.insecure,
        verify_profile=settings.verify_profile,
        certificate_chain=chain, alpn_protocols=tuple(a.encode() for a in settings.alpn), **kwargs,
    )
    return ClientRuntime(settings, parse_host_port(settings.listen), target, tls, settings.limits,
                         connect_on_first_data=settings.remote_connect == "first-data",
                         tickets=TicketStore() if settings.resume_sessions and settings.qkd.mode == "off" else None)
