"""Key-exchange groups for the key_share extension (RFC 8446 §4.2.8, RFC 10024, draft-ietf-tls-mlkem).

Every group is a KEM from the protocol's point of view: the client sends a share, the server answers
with its share and both end with a shared secret. Hybrids concatenate their parts; X25519MLKEM768 puts
ML-KEM first, the NIST-curve hybrids put ECDH first (REFERENCE.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .alerts import AlertDescription, TLSAlert, illegal_parameter
from .codepoints import NamedGroup
from .kem import KEM, KEMUnavailable, get_backend


class _ECDH:
    """One classical component: share encoding and the RFC 8446 §4.2.8.2 checks."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "x25519":
            self.share_len = 32
            self.secret_len = 32
        elif name == "x448":
            self.share_len = 56
            self.secret_len = 56
        elif name == "secp256r1":
            self.curve: ec.EllipticCurve = ec.SECP256R1()
            self.share_len = 65
            self.secret_len = 32
        elif name == "secp384r1":
            self.curve = ec.SECP384R1()
            self.share_len = 97
            self.secret_len = 48
        elif name == "secp521r1":
            self.curve = ec.SECP521R1()
            self.share_len = 133
            self.secret_len = 66
        else:  # pragma: no cover - table below is the only caller
            raise ValueError(name)

    def generate(self) -> tuple[Any, bytes]:
        priv: Any
        if self.name == "x25519":
            priv = x25519.X25519PrivateKey.generate()
            return priv, priv.public_key().public_bytes_raw()
        if self.name == "x448":
            priv = x448.X448PrivateKey.generate()
            return priv, priv.public_key().public_bytes_raw()
        priv = ec.generate_private_key(self.curve)
        return priv, priv.public_key().public_bytes(_X962, _UNCOMPRESSED)

    def exchange(self, private: Any, peer_share: bytes) -> bytes:
        if len(peer_share) != self.share_len:
            raise illegal_parameter(f"{self.name} share is {len(peer_share)} bytes, not {self.share_len}")
        if self.name == "x25519":
            try:
                return private.exchange(x25519.X25519PublicKey.from_public_bytes(peer_share))
            except ValueError:
                # cryptography refuses the all-zero result of a small-order point (RFC 7748 §6.1).
                raise illegal_parameter("x25519 share gives an all-zero shared secret") from None
        if self.name == "x448":
            try:
                return private.exchange(x448.X448PublicKey.from_public_bytes(peer_share))
            except ValueError:  # the all-zero result, as for X25519 (RFC 8446 §7.4.2)
                raise illegal_parameter("x448 share gives an all-zero shared secret") from None
        if peer_share[0] != 4:  # RFC 8446 §4.2.8.2: only the uncompressed form
            raise illegal_parameter(f"{self.name} share is not an uncompressed point")
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self.curve, peer_share)
        except ValueError:
            raise illegal_parameter(f"{self.name} share is not a point on the curve") from None
        return private.exchange(ec.ECDH(), peer)


_X962 = Encoding.X962
_UNCOMPRESSED = PublicFormat.UncompressedPoint


@dataclass
class ClientKeyShare:
    """The client's secret half of one offered key share; call ``finish`` with the server's share."""

    group: Group
    key_exchange: bytes
    _ecdh_private: Any
    _kem_private: Any

    def finish(self, server_share: bytes) -> bytes:
        return self.group.client_finish(self, server_share)


class Group:
    """A named group: what each side sends and how the shared secret is made."""

    def __init__(self, code: NamedGroup, ecdh: str | None, kem: str | None, kem_first: bool = False) -> None:
        self.code = int(code)
        self.name = {NamedGroup.x25519: "X25519", NamedGroup.x448: "X448"}.get(code, code.name)
        self.ecdh = _ECDH(ecdh) if ecdh else None
        self.kem_name = kem
        self.kem_first = kem_first
        self._kem: KEM | None = None
        self.hybrid = ecdh is not None and kem is not None
        self.post_quantum = kem is not None
        ek_len, ct_len = _KEM_LENGTHS.get(kem or "", (0, 0))
        ecdh_len = self.ecdh.share_len if self.ecdh else 0
        self.client_share_len = ecdh_len + ek_len
        self.server_share_len = ecdh_len + ct_len

    @property
    def kem(self) -> KEM:
        if self._kem is None:
            assert self.kem_name is not None
            self._kem = get_backend().kem(self.kem_name)
        return self._kem

    def available(self) -> bool:
        if self.kem_name is None:
            return True
        try:
            self.kem  # noqa: B018 - resolving the backend is the check
        except KEMUnavailable:
            return False
        return True

    def _split(self, share: bytes, kem_len: int) -> tuple[bytes, bytes]:
        """(ecdh part, kem part) in this group's wire order."""
        if self.ecdh is None:
            return b"", share
        if self.kem_name is None:
            return share, b""
        if self.kem_first:
            return share[kem_len:], share[:kem_len]
        return share[: self.ecdh.share_len], share[self.ecdh.share_len :]

    def _join(self, ecdh_part: bytes, kem_part: bytes) -> bytes:
        return kem_part + ecdh_part if self.kem_first else ecdh_part + kem_part

    def client_generate(self) -> ClientKeyShare:
        ecdh_priv = kem_priv = None
        ecdh_pub = kem_pub = b""
        if self.ecdh is not None:
            ecdh_priv, ecdh_pub = self.ecdh.generate()
        if self.kem_name is not None:
            kem_priv, kem_pub = self.kem.generate()
        return ClientKeyShare(self, self._join(ecdh_pub, kem_pub), ecdh_priv, kem_priv)

    def server_respond(self, client_share: bytes) -> tuple[bytes, bytes]:
        """(server key_share, shared secret) for a client's share; alerts as REFERENCE.md §1 requires."""
        if len(client_share) != self.client_share_len:
            raise illegal_parameter(
                f"{self.name} client key share is {len(client_share)} bytes, not {self.client_share_len}"
            )
        ek_len = self.client_share_len - (self.ecdh.share_len if self.ecdh else 0)
        ecdh_part, kem_part = self._split(client_share, ek_len)
        ecdh_secret = kem_secret = b""
        ecdh_pub = ct = b""
        if self.kem_name is not None:
            try:
                ct, kem_secret = self.kem.encapsulate(kem_part)
            except ValueError:
                raise illegal_parameter(f"{self.name}: the ML-KEM encapsulation key fails the FIPS 203 check") from None
        if self.ecdh is not None:
            priv, ecdh_pub = self.ecdh.generate()
            ecdh_secret = self.ecdh.exchange(priv, ecdh_part)
        return self._join(ecdh_pub, ct), self._join(ecdh_secret, kem_secret)

    def client_finish(self, share: ClientKeyShare, server_share: bytes) -> bytes:
        if len(server_share) != self.server_share_len:
            raise illegal_parameter(
                f"{self.name} server key share is {len(server_share)} bytes, not {self.server_share_len}"
            )
        ct_len = self.server_share_len - (self.ecdh.share_len if self.ecdh else 0)
        ecdh_part, kem_part = self._split(server_share, ct_len)
        ecdh_secret = kem_secret = b""
        if self.kem_name is not None:
            try:
                kem_secret = self.kem.decapsulate(share._kem_private, kem_part)
            except ValueError:
                raise TLSAlert(AlertDescription.internal_error, f"{self.name}: ML-KEM decapsulation failed") from None
        if self.ecdh is not None:
            ecdh_secret = self.ecdh.exchange(share._ecdh_private, ecdh_part)
        return self._join(ecdh_secret, kem_secret)


_KEM_LENGTHS = {"ML-KEM-512": (800, 768), "ML-KEM-768": (1184, 1088), "ML-KEM-1024": (1568, 1568)}

GROUPS: dict[int, Group] = {
    g.code: g
    for g in (
        Group(NamedGroup.X25519MLKEM768, "x25519", "ML-KEM-768", kem_first=True),
        Group(NamedGroup.SecP256r1MLKEM768, "secp256r1", "ML-KEM-768"),
        Group(NamedGroup.SecP384r1MLKEM1024, "secp384r1", "ML-KEM-1024"),
        Group(NamedGroup.MLKEM512, None, "ML-KEM-512"),
        Group(NamedGroup.MLKEM768, None, "ML-KEM-768"),
        Group(NamedGroup.MLKEM1024, None, "ML-KEM-1024"),
        Group(NamedGroup.x25519, "x25519", None),
        Group(NamedGroup.secp256r1, "secp256r1", None),
        Group(NamedGroup.secp384r1, "secp384r1", None),
        Group(NamedGroup.secp521r1, "secp521r1", None),
        Group(NamedGroup.x448, "x448", None),
    )
}

_BY_NAME = {g.name.lower(): g for g in GROUPS.values()}

# The defaults of OpenSSL 3.5, Go and BoringSSL: hybrid first, then classical (REFERENCE.md §1).
DEFAULT_GROUPS: tuple[int, ...] = (
    NamedGroup.X25519MLKEM768,
    NamedGroup.SecP256r1MLKEM768,
    NamedGroup.SecP384r1MLKEM1024,
    NamedGroup.MLKEM768,
    NamedGroup.MLKEM1024,
    NamedGroup.x25519,
    NamedGroup.secp256r1,
    NamedGroup.secp384r1,
    # Last, as OpenSSL lists them: for peers that offer nothing else. Cheap, and checked as strictly.
    NamedGroup.secp521r1,
    NamedGroup.x448,
)


def group_by_name(name: str) -> Group:
    """Look up an IANA group name (case-insensitive), e.g. ``X25519MLKEM768``."""
    try:
        return _BY_NAME[name.strip().lower()]
    except KeyError:
        known = ", ".join(g.name for g in GROUPS.values())
        raise ValueError(f"unknown group {name!r}; known groups: {known}") from None


def parse_group_list(text: str) -> tuple[int, ...]:
    """A comma- or colon-separated list of group names, checked to be usable here."""
    out: list[int] = []
    for part in text.replace(":", ",").split(","):
        if not part.strip():
            continue
        group = group_by_name(part)
        if not group.available():
            raise ValueError(f"group {group.name} needs a KEM backend that is not available here")
        if group.code not in out:
            out.append(group.code)
    if not out:
        raise ValueError("the group list is empty")
    return tuple(out)


def group_name(code: int) -> str:
    group = GROUPS.get(code)
    if group is not None:
        return group.name
    try:
        return NamedGroup(code).name
    except ValueError:
        return f"0x{code:04x}"
