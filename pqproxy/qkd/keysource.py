"""Where a sidecar gets QKD keys: the key-source interface, and its ETSI 014 and static-file sources.

The proxy knows only ``KeySource``: ``new_key(peer)`` as the side that starts (the client sidecar, an
ETSI 014 *master*: ``enc_keys``), ``key_for(peer, key_id)`` as the side that answers (the server sidecar,
the *slave*: ``dec_keys``), and ``link(peer)`` for the link's health as the key source reports it. A
Cisco SKIP endpoint or a hardware source would be one more class here; the proxy would not change.

A ``QKDKey`` holds its material in a bytearray that ``zero()`` overwrites once the handshake has imported
it; its repr never shows it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .client import ETSI014Client, KMEError, KMESettings


@dataclass
class QKDKey:
    key_id: str
    material: bytearray

    def zero(self) -> None:
        self.material[:] = bytes(len(self.material))

    def __repr__(self) -> str:
        return f"QKDKey(key_id={self.key_id!r}, material=<{len(self.material)} bytes>)"

    __str__ = __repr__


class KeySource(Protocol):
    sae_id: str

    async def new_key(self, peer: str) -> QKDKey: ...
    async def key_for(self, peer: str, key_id: str) -> QKDKey: ...
    async def link(self, peer: str) -> dict[str, Any] | None: ...
    async def aclose(self) -> None: ...


class ETSI014KeySource:
    """Keys from a KME over ETSI GS QKD 014."""

    def __init__(self, sae_id: str, settings: KMESettings, key_bits: int | None = None, observe: Any = None) -> None:
        self.sae_id = sae_id
        self.key_bits = key_bits
        self.client = ETSI014Client(settings, observe)

    async def new_key(self, peer: str) -> QKDKey:
        (key,) = (await self.client.enc_keys(peer, 1, self.key_bits)).keys
        return QKDKey(key.key_ID, key.material())

    async def key_for(self, peer: str, key_id: str) -> QKDKey:
        (key,) = (await self.client.dec_keys(peer, [key_id], self.key_bits)).keys
        return QKDKey(key.key_ID, key.material())

    async def link(self, peer: str) -> dict[str, Any] | None:
        status = await self.client.status(peer)
        return {"stored_key_count": status.stored_key_count, **(status.status_extension or {})}

    async def aclose(self) -> None:
        await self.client.aclose()


class StaticKeySource:
    """Keys from a JSON file ``{"keys": {"<key_ID>": "<base64>"}}`` shared by both sides: for tests and for
    links keyed by hand. ``new_key`` hands out each key once, in file order; ``key_for`` finds one by ID."""

    def __init__(self, sae_id: str, path: str | Path) -> None:
        self.sae_id = sae_id
        try:
            doc = json.loads(Path(path).read_text())
            self._keys = {str(k): bytearray(base64.b64decode(v, validate=True)) for k, v in doc["keys"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a key file ({exc})") from None
        self._order = list(self._keys)

    async def new_key(self, peer: str) -> QKDKey:
        if not self._order:
            raise KMEError("unavailable", "the key file has no unused key left")
        key_id = self._order.pop(0)
        return QKDKey(key_id, bytearray(self._keys[key_id]))

    async def key_for(self, peer: str, key_id: str) -> QKDKey:
        material = self._keys.get(key_id)
        if material is None:
            raise KMEError("bad_request", f"no key {key_id!r} in the key file")
        return QKDKey(key_id, bytearray(material))

    async def link(self, peer: str) -> dict[str, Any] | None:
        return None

    async def aclose(self) -> None:
        return None
