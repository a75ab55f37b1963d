"""Prometheus metrics of the sidecar: one ``Metrics`` object per process, rendered by the admin endpoint.

Theory of operation
-------------------
Every metric name starts with ``pqproxy_``. Label values come only from small fixed sets chosen by the
code or the configuration (listener names, group names, refusal reasons, results); client addresses and
SNI never become labels. As a backstop, each label keeps at most ``MAX_LABEL_VALUES`` distinct values and
folds any further one into ``"other"``, so a bug upstream cannot grow the series count without bound.

The recording methods run on the hot path (per connection, per chunk of proxied bytes), so each one is a
dict look-up of a pre-bound ``.labels()`` child plus one ``inc``/``observe``; ``.labels()`` itself (which
validates and hashes the label values) runs once per distinct value.

Two modes, chosen by the environment when a ``Metrics`` is created:

- In-process (``PROMETHEUS_MULTIPROC_DIR`` unset): a fresh ``CollectorRegistry`` per ``Metrics``, so tests
  can make as many independent instances as they like. ``render()`` renders that registry.
- Multi-process (``PROMETHEUS_MULTIPROC_DIR`` set to an existing, writable directory): pqproxy runs N worker
  processes (SO_REUSEPORT) under one supervisor that serves the admin endpoint. Every process writes its
  values to memory-mapped files in that directory; ``render()`` (called in the supervisor) aggregates all of
  them with ``MultiProcessCollector``. Counters and histograms are summed over every process that ever wrote
  (so a restarted worker's counts survive it); ``pqproxy_active_connections`` is a ``livesum`` gauge, the
  sum over live processes only. When a worker exits the supervisor must call ``mark_process_dead(pid)`` so
  its live gauges are dropped. The supervisor must also empty the directory before it starts the workers
  (``clear_multiprocess_dir``): files left by an earlier run would be counted again.

  prometheus_client picks its value storage (in-memory or mmap) from ``PROMETHEUS_MULTIPROC_DIR`` when it
  is *first imported*, so the variable should be set before that, i.e. before the supervisor spawns or
  forks its workers. ``Metrics`` does not rely on it: it re-reads the variable when it is created and
  switches prometheus_client's value class to match, so a variable set after the import but before the
  first ``Metrics`` still works (tested). One process uses one mode: the last ``Metrics`` created decides
  it for metrics created afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from .. import __version__

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client still honours the old lower-case spelling; so do we, to agree with it.
_LEGACY_MULTIPROC_ENV = "prometheus_multiproc_dir"

# Handshakes take ~1 ms on loopback and up to the 10 s handshake timeout on a bad path.
HANDSHAKE_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Classical ClientHellos are ~250-600 bytes, X25519MLKEM768 ones ~1.4-1.6 KB (one Ethernet MTU is 1500,
# the point where middleboxes start to break), SecP384r1MLKEM1024 ones ~2.3 KB; 131396 is the default
# --max-client-hello.
CLIENT_HELLO_BYTES_BUCKETS = (256, 512, 1024, 1500, 2048, 3072, 4096, 8192, 16384, 65536, 131396)
# KME calls take a few ms on a LAN; the client's deadline is 2 s a call, 4 s with retries.
KME_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
# A label never carries more distinct values than this; further ones are counted as OVERFLOW_LABEL.
MAX_LABEL_VALUES = 64
OVERFLOW_LABEL = "other"
# handshake() results that established a session, the ones pqproxy_quantum_safe_sessions_total counts.
ESTABLISHED_RESULTS = frozenset({"ok", "legacy_tls12"})


def multiprocess_dir() -> str | None:
    """The directory of multi-process mode, or None for in-process mode."""
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(_LEGACY_MULTIPROC_ENV) or None


def clear_multiprocess_dir(path: str | os.PathLike[str]) -> None:
    """Remove the metric files of an earlier run (the supervisor calls this before starting workers)."""
    for entry in Path(path).glob("*.db"):
        entry.unlink(missing_ok=True)


def _use_value_class(multiprocess_mode: bool) -> None:
    """Make prometheus_client store new metric values the way this process's mode needs.

    prometheus_client reads the environment once, at import (``values.ValueClass``), and reads
    ``values.ValueClass`` whenever it creates a metric or a labelled child; re-deciding here makes the
    import order irrelevant.
    """
    in_memory = values.ValueClass is values.MutexValue
    if multiprocess_mode and in_memory:
        values.ValueClass = values.MultiProcessValue()
    elif not multiprocess_mode and not in_memory:
        values.ValueClass = values.MutexValue


class _Children:
    """Pre-bound ``.labels()`` children of one metric, keyed by label values, at most MAX_LABEL_VALUES."""

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._cache: dict[Any, Any] = {}

    def get(self, *label_values: str) -> Any:
        key = label_values if len(label_values) != 1 else label_values[0]
        child = self._cache.get(key)
        if child is None:
            child = self._bind(key, label_values)
        return child

    def _bind(self, key: Any, label_values: tuple[str, ...]) -> Any:
        if len(self._cache) >= MAX_LABEL_VALUES:
            label_values = (OVERFLOW_LABEL,) * len(label_values)
            overflow_key = label_values if len(label_values) != 1 else label_values[0]
            child = self._cache.get(overflow_key)
            if child is None:  # the one entry allowed past the cap
                child = self._cache[overflow_key] = self._metric.labels(*label_values)
            return child
        child = self._cache[key] = self._metric.labels(*label_values)
        return child


class Metrics:
    """All pqproxy metrics of one process (see the module docstring for the two modes)."""

    def __init__(self, version: str = __version__) -> None:
        self.multiprocess_dir = multiprocess_dir()
        if self.multiprocess_dir is not None and not os.path.isdir(self.multiprocess_dir):
            raise ValueError(f"{MULTIPROC_ENV}={self.multiprocess_dir!r} is not a directory")
        _use_value_class(self.multiprocess_dir is not None)

        # The registry that render() renders. In multi-process mode the metrics below are registered
        # nowhere: their values live in the mmap files, and the registry holds only the collector that reads
        # every process's files.
        self.registry = CollectorRegistry()
        own: CollectorRegistry | None = self.registry
        if self.multiprocess_dir is not None:
            multiprocess.MultiProcessCollector(self.registry, path=self.multiprocess_dir)
            own = None

        self._active = Gauge("pqproxy_active_connections", "Connections open now.", ["listener"],
                             registry=own, multiprocess_mode="livesum")
        self._connections = Counter("pqproxy_connections", "Connections accepted.", ["listener"], registry=own)
        self._handshakes = Counter("pqproxy_handshakes", "TLS handshakes by result and key-exchange group.",
                                   ["result", "group"], registry=own)
        self._handshake_seconds = Histogram("pqproxy_handshake_duration_seconds",
                                            "TLS handshake duration by key-exchange group.", ["group"],
                                            registry=own, buckets=HANDSHAKE_SECONDS_BUCKETS)
        self._client_hello_bytes = Histogram("pqproxy_client_hello_size_bytes", "Size of the ClientHello.",
                                             registry=own, buckets=CLIENT_HELLO_BYTES_BUCKETS)
        self._quantum_safe = Counter("pqproxy_quantum_safe_sessions",
                                     "Established sessions by whether their key exchange was post-quantum.",
                                     ["quantum_safe"], registry=own)
        self._resumed = Counter("pqproxy_resumed_sessions", "Handshakes that resumed a session (a ticket): no "
                                "certificate was sent or verified.", registry=own)
        self._refusals = Counter("pqproxy_refusals", "Connections refused, by reason.", ["reason"], registry=own)
        self._bytes = Counter("pqproxy_bytes_proxied", "Bytes proxied (upstream: client to upstream).",
                              ["direction"], registry=own)
        self._upstream_errors = Counter("pqproxy_upstream_errors", "Upstream connection errors, by kind.",
                                        ["kind"], registry=own)
        self._resets = Counter("pqproxy_resets_propagated", "Connections whose side (upstream or downstream) we "
                               "closed with a TCP RST because the other did not end cleanly (a reset, no "
                               "close_notify, a TLS error, a timeout, a drain cut).", ["direction"], registry=own)
        self._reloads = Counter("pqproxy_config_reloads", "Configuration reloads, by result.", ["result"],
                                registry=own)
        # QKD: keys by result, degraded handshakes, the KME's latency and errors, and the link as it reports it.
        self._qkd_keys = Counter("pqproxy_qkd_keys", "QKD keys used for handshakes, by result.", ["result"],
                                 registry=own)
        self._qkd_degraded = Counter("pqproxy_qkd_degraded",
                                     "Handshakes that went on without a QKD key (qkd = prefer).", registry=own)
        self._kme_seconds = Histogram("pqproxy_qkd_kme_request_duration_seconds",
                                      "KME (ETSI GS QKD 014) request latency, retries included.", ["operation"],
                                      registry=own, buckets=KME_SECONDS_BUCKETS)
        self._kme_errors = Counter("pqproxy_qkd_kme_errors", "KME request failures, by kind.", ["kind"],
                                   registry=own)
        self._link_qber = Gauge("pqproxy_qkd_link_qber", "The QKD link's quantum bit error rate, as the KME reports.",
                                ["peer"], registry=own, multiprocess_mode="mostrecent")
        self._link_rate = Gauge("pqproxy_qkd_link_key_rate_bits_per_second",
                                "The QKD link's secret key rate, as the KME reports.", ["peer"], registry=own,
                                multiprocess_mode="mostrecent")
        self._link_keys = Gauge("pqproxy_qkd_link_stored_keys", "Keys the KME holds for this peer.", ["peer"],
                                registry=own, multiprocess_mode="mostrecent")
        self._link_disturbances = Gauge("pqproxy_qkd_link_disturbances",
                                        "Times the QKD link aborted (QBER over threshold), as the KME reports.",
                                        ["peer"], registry=own, multiprocess_mode="mostrecent")
        self._link_up = Gauge("pqproxy_qkd_link_up", "1 while the KME says the QKD link is up, else 0.",
                              ["peer", "state"], registry=own, multiprocess_mode="mostrecent")
        self._build_info = Gauge("pqproxy_build_info", "pqproxy version; always 1.", ["version"], registry=own,
                                 multiprocess_mode="max")
        self._build_info.labels(version).set(1)

        self._active_by = _Children(self._active)
        self._connections_by = _Children(self._connections)
        self._handshakes_by = _Children(self._handshakes)
        self._handshake_seconds_by = _Children(self._handshake_seconds)
        self._quantum_safe_by = {True: self._quantum_safe.labels("true"), False: self._quantum_safe.labels("false")}
        self._refusals_by = _Children(self._refusals)
        self._bytes_by = _Children(self._bytes)
        self._upstream_errors_by = _Children(self._upstream_errors)
        self._resets_by = _Children(self._resets)
        self._reloads_by = _Children(self._reloads)
        self._qkd_keys_by = _Children(self._qkd_keys)
        self._kme_seconds_by = _Children(self._kme_seconds)
        self._kme_errors_by = _Children(self._kme_errors)
        self._link_states: dict[str, str] = {}
        self._observe_client_hello: Callable[[float], None] = self._client_hello_bytes.observe

    # -- recording (hot path) ------------------------------------------------------------------------

    def connection_opened(self, listener: str) -> None:
        self._active_by.get(listener).inc()
        self._connections_by.get(listener).inc()

    def connection_closed(self, listener: str) -> None:
        self._active_by.get(listener).dec()

    def handshake(self, result: str, group: str | None, seconds: float | None, client_hello_size: int | None,
                  quantum_safe: bool) -> None:
        """One finished handshake attempt (any result). ``seconds``/``client_hello_size`` None: not observed.

        ``quantum_safe`` is counted only for results in ESTABLISHED_RESULTS (a failed handshake is no session).
        """
        group_label = group if group is not None else "none"
        self._handshakes_by.get(result, group_label).inc()
        if seconds is not None:
            self._handshake_seconds_by.get(group_label).observe(seconds)
        if client_hello_size is not None:
            self._observe_client_hello(client_hello_size)
        if result in ESTABLISHED_RESULTS:
            self._quantum_safe_by[bool(quantum_safe)].inc()

    def resumed(self) -> None:
        self._resumed.inc()

    def refusal(self, reason: str) -> None:
        self._refusals_by.get(reason).inc()

    def bytes_proxied(self, direction: str, n: int) -> None:
        """``direction`` is "upstream" (client to upstream) or "downstream"."""
        self._bytes_by.get(direction).inc(n)

    def upstream_error(self, kind: str) -> None:
        self._upstream_errors_by.get(kind).inc()

    def reset_propagated(self, direction: str) -> None:
        """``direction``: the side that got the RST, "upstream" or "downstream" (as in bytes_proxied)."""
        self._resets_by.get(direction).inc()

    def reload(self, result: str) -> None:
        self._reloads_by.get(result).inc()

    def qkd_key(self, result: str) -> None:
        """One handshake's QKD key: ``ok`` (keyed), or why not (``kme_unavailable``, ``not_offered``, ...)."""
        self._qkd_keys_by.get(result).inc()

    def qkd_degraded(self) -> None:
        self._qkd_degraded.inc()

    def kme_request(self, operation: str, seconds: float, error_kind: str | None) -> None:
        self._kme_seconds_by.get(operation).observe(seconds)
        if error_kind is not None:
            self._kme_errors_by.get(error_kind).inc()

    def qkd_link(self, peer: str, link: dict[str, Any] | None) -> None:
        """The link as the KME's status reports it (None: the KME did not answer: state ``unknown``)."""
        link = link or {}
        state = str(link.get("link_state", "unknown"))[:32]
        previous = self._link_states.get(peer)
        if previous is not None and previous != state:
            self._link_up.labels(peer, previous).set(0)
        self._link_states[peer] = state
        self._link_up.labels(peer, state).set(1 if state == "up" else 0)
        if "qber" in link:
            self._link_qber.labels(peer).set(float(link["qber"]))
        if "key_rate_bps" in link:
            self._link_rate.labels(peer).set(float(link["key_rate_bps"]))
        if "stored_key_count" in link:
            self._link_keys.labels(peer).set(float(link["stored_key_count"]))
        if "disturbances" in link:
            self._link_disturbances.labels(peer).set(float(link["disturbances"]))

    # -- supervisor side -----------------------------------------------------------------------------

    def mark_process_dead(self, pid: int) -> None:
        """A worker exited: drop its live gauges (multi-process mode; a no-op in-process)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(pid, self.multiprocess_dir)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric (aggregated over processes in multi-process mode)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
