"""How a QKD key enters a TLS 1.3 handshake between two pqproxy sidecars (DESIGN.md, "QKD binding").

No standard says it; this binding is built from standards only:

- the client offers the key as an external PSK (RFC 8446 §4.2.11) with ``psk_dhe_ke``, imported through
  RFC 9258 (so it is bound to TLS 1.3 and to the KDF), together with RFC 8773's
  ``tls_cert_with_extern_psk``: the server still authenticates with its certificate;
- the PSK's external identity names the client's SAE ID and the key_ID, so the server knows whom to ask
  for ``dec_keys``: ``pqproxy-qkd014:v1:<SAE ID>:<key_ID>`` (ASCII; both parts from a restricted alphabet,
  so the identity parses one way only);
- the key schedule then has the QKD key in the early secret and the hybrid shared secret in the handshake
  secret: the session stays safe while either holds.

``ReplayGuard`` remembers the key_IDs a server has accepted (bounded), so a key_ID is accepted once even
if a KME were to hand the same key out twice.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

from ..tls.extensions import ImportedIdentity, OfferedPsks

PREFIX = b"pqproxy-qkd014:v1:"
_PART = re.compile(rb"[A-Za-z0-9._\-]{1,128}")
MAX_REMEMBERED = 100_000  # key_IDs a server remembers as used (about 10 MB at most)


@dataclass(frozen=True)
class QKDIdentity:
    sae_id: str  # the client's (the master's) SAE ID
    key_id: str

    def encode(self) -> bytes:
        sae, key = self.sae_id.encode("ascii"), self.key_id.encode("ascii")
        if not (_PART.fullmatch(sae) and _PART.fullmatch(key)):
            raise ValueError("SAE IDs and key_IDs must be 1-128 characters of A-Z a-z 0-9 . _ -")
        return PREFIX + sae + b":" + key

    @classmethod
    def parse(cls, external_identity: bytes) -> QKDIdentity | None:
        """The identity if ``external_identity`` is one of ours, else None (another PSK: not our business)."""
        if not external_identity.startswith(PREFIX):
            return None
        sae, sep, key = external_identity[len(PREFIX):].partition(b":")
        if not sep or not _PART.fullmatch(sae) or not _PART.fullmatch(key):
            return None
        return cls(sae.decode("ascii"), key.decode("ascii"))


def valid_sae_id(text: str) -> bool:
    return bool(_PART.fullmatch(text.encode("ascii", "replace")))


def offered_qkd_identity(offered: OfferedPsks | None) -> QKDIdentity | None:
    """Our identity among a ClientHello's PSK identities (RFC 9258 imported ones), if there is one, among those
    the engine will try (``MAX_PSK_IDENTITIES_TRIED``): a key it would never look at is not worth fetching."""
    from ..tls.alerts import TLSAlert
    from ..tls.server import MAX_PSK_IDENTITIES_TRIED

    if offered is None:
        return None
    for identity in offered.identities[:MAX_PSK_IDENTITIES_TRIED]:
        try:
            imported = ImportedIdentity.decode(identity.identity)
        except TLSAlert:
            continue
        found = QKDIdentity.parse(imported.external_identity)
        if found is not None:
            return found
    return None


class ReplayGuard:
    """key_IDs already accepted, oldest forgotten first past ``limit``."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self.limit = limit
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_use(self, key_id: str) -> bool:
        """True the first time a key_ID is seen (and remembers it); False for a replay."""
        if key_id in self._seen:
            return False
        self._seen[key_id] = None
        if len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        return True
