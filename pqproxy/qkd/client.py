"""An ETSI GS QKD 014 client over mutual TLS: ``status``, ``enc_keys``, ``dec_keys``.

httpx (on trio, through anyio) does the HTTP; this module adds what a sidecar needs from a KME client:

- a hard deadline for each call (``timeout``) around httpx's own connect/read timeouts, so a KME that
  accepts and never answers costs at most that;
- a bounded retry budget: connection failures, timeouts and 503 are retried up to ``retries`` times with
  a short backoff, all inside ``budget`` seconds (a handshake waits for its key, so the budget is small);
  400 and 401 are never retried;
- every failure is a ``KMEError`` whose ``kind`` (``timeout``, ``connect``, ``tls``, ``bad_request``,
  ``unauthorized``, ``unavailable``, ``bad_response``, ``http``) is a metric label and whose message says
  what the KME said;
- answers are parsed strictly (``pqproxy.qkd.etsi014``): an answer that does not parse, a key of the wrong
  length or a key_ID other than the one asked for is ``bad_response``, never half-trusted.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import trio
from pydantic import BaseModel, ValidationError

from .etsi014 import API, KeyContainer, Status

DEFAULT_TIMEOUT = 2.0  # seconds for one call
DEFAULT_RETRIES = 2  # extra attempts after the first, for retryable failures
DEFAULT_BUDGET = 4.0  # seconds for a call and all its retries
BACKOFF = 0.1  # seconds before the first retry, doubled each time
MAX_RESPONSE = 256 * 1024  # bytes of a KME answer we read at most

M = TypeVar("M", bound=BaseModel)


class KMEError(Exception):
    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


_RETRYABLE = {"timeout", "connect", "unavailable"}


@dataclass(frozen=True)
class KMESettings:
    url: str  # https://host:port
    cert: str  # our SAE certificate (its CN is our SAE ID to the KME)
    key: str
    ca: str  # the KME's CA
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    budget: float = DEFAULT_BUDGET


def client_context(settings: KMESettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca)
    context.load_cert_chain(settings.cert, settings.key)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ETSI014Client:
    """One KME; ``aclose()`` when done. ``observe(operation, seconds, error_kind)`` sees every call."""

    def __init__(self, settings: KMESettings,
                 observe: Callable[[str, float, str | None], None] | None = None) -> None:
        if not settings.url.startswith("https://"):
            raise ValueError("the KME URL must be https:// (ETSI GS QKD 014 mandates TLS)")
        self.settings = settings
        self.observe = observe
        self._http = httpx.AsyncClient(base_url=settings.url.rstrip("/"), verify=client_context(settings),
                                       timeout=httpx.Timeout(settings.timeout), follow_redirects=False,
                                       limits=httpx.Limits(max_connections=16, max_keepalive_connections=4))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def status(self, slave: str) -> Status:
        return await self._call("status", "GET", f"{API}/{quote(slave, safe='')}/status", None, Status)

    async def enc_keys(self, slave: str, number: int = 1, size: int | None = None) -> KeyContainer:
        body: dict[str, Any] = {"number": number, **({"size": size} if size else {})}
        container = await self._call("enc_keys", "POST", f"{API}/{quote(slave, safe='')}/enc_keys", body,
                                     KeyContainer)
        if len(container.keys) != number:
            raise KMEError("bad_response", f"asked for {number} key(s), got {len(container.keys)}")
        for key in container.keys:
            self._check_size(key.material(), size)
        return container

    async def dec_keys(self, master: str, key_ids: list[str], size: int | None = None) -> KeyContainer:
        body = {"key_IDs": [{"key_ID": key_id} for key_id in key_ids]}
        container = await self._call("dec_keys", "POST", f"{API}/{quote(master, safe='')}/dec_keys", body,
                                     KeyContainer)
        if [k.key_ID for k in container.keys] != key_ids:
            raise KMEError("bad_response", "the KME answered with other key_IDs than asked for")
        for key in container.keys:
            self._check_size(key.material(), size)
        return container

    @staticmethod
    def _check_size(material: bytearray, size: int | None) -> None:
        if size is not None and len(material) * 8 != size:
            raise KMEError("bad_response", f"a key of {len(material) * 8} bits, not {size}")
        if len(material) < 16:
            raise KMEError("bad_response", f"a key of {len(material) * 8} bits is too short to key TLS")

    async def _call(self, operation: str, method: str, path: str, body: Any, model: type[M]) -> M:
        started = time.monotonic()
        delay = BACKOFF
        attempt = 0
        with trio.move_on_after(self.settings.budget) as budget:
            while True:
                attempt += 1
                try:
                    with trio.fail_after(self.settings.timeout):
                        result = await self._once(method, path, body, model)
                    self._observe(operation, started, None)
                    return result
                except trio.TooSlowError:
                    error = KMEError("timeout", f"no answer within {self.settings.timeout:g}s")
                except KMEError as exc:
                    error = exc
                if error.kind not in _RETRYABLE or attempt > self.settings.retries:
                    self._observe(operation, started, error.kind)
                    raise error
                await trio.sleep(delay)
                delay *= 2
        assert budget.cancelled_caught
        self._observe(operation, started, "timeout")
        raise KMEError("timeout", f"no usable answer within the {self.settings.budget:g}s budget ({attempt} tries)")

    async def _once(self, method: str, path: str, body: Any, model: type[M]) -> M:
        try:
            async with self._http.stream(method, path, json=body) as response:
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_RESPONSE:
                        raise KMEError("bad_response", f"an answer over {MAX_RESPONSE} bytes")
        except httpx.TimeoutException:
            raise KMEError("timeout", f"no answer within {self.settings.timeout:g}s") from None
        except httpx.ConnectError as exc:
            kind = "tls" if isinstance(exc.__cause__, ssl.SSLError) or "SSL" in str(exc) else "connect"
            raise KMEError(kind, f"cannot reach the KME: {exc}") from None
        except httpx.HTTPError as exc:
            raise KMEError("http", f"HTTP failure: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status == 200:
            try:
                return model.model_validate_json(bytes(data))
            except ValidationError as exc:
                raise KMEError("bad_response", f"the KME's answer does not parse: {exc.errors()[0]['msg']}",
                               status) from None
        message = _error_message(bytes(data))
        kind = {400: "bad_request", 401: "unauthorized", 503: "unavailable"}.get(status, "http")
        raise KMEError(kind, f"KME answered {status}: {message}", status)

    def _observe(self, operation: str, started: float, kind: str | None) -> None:
        if self.observe is not None:
            self.observe(operation, time.monotonic() - started, kind)


def _error_message(data: bytes) -> str:
    import json

    try:
        doc = json.loads(data)
        message = str(doc.get("message", ""))[:200] if isinstance(doc, dict) else ""
    except ValueError:
        message = ""
    return message or data[:120].decode("utf-8", "replace") or "(no body)"
