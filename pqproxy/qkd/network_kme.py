"""The I/O edge of a QKD network (``network.py``): each site's ETSI GS QKD 014 endpoint over mutual TLS, and one
plain control endpoint on loopback for the simulation and its metrics.

Control: ``GET /links`` (every link's state), ``POST /eavesdropper {"link": "A-B", "fraction": F}`` (intercept-
resend on one link), ``GET /status?master=X&slave=Y`` (the route a pair's keys take now), ``GET /metrics`` (the
operator's KPIs in the Prometheus text format: per link QBER, secret key rate, state, aborts, stored and used key;
per pair keys delivered, refusals, route length; key delivery latency; keys each trusted node saw).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import h11
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ..http11 import HTTPServer, Response, open_listeners
from .kme import READ_TIMEOUT, SEND_TIMEOUT, KMEFault, KMEServer, _error, _json, server_context
from .link import UP
from .network import LATENCY_BUCKETS, Network, SiteStore

log = logging.getLogger("pqproxy.kme")
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def pair_label(pair: frozenset[str]) -> str:
    return "-".join(sorted(pair))


class NetworkCollector(Collector):
    """The network's KPIs, read at each scrape (names: ``pqproxy_qkd_network_*``)."""

    def __init__(self, network: Network) -> None:
        self.network = network

    def collect(self) -> Iterator[Any]:
        net = self.network
        now = net.clock()
        qber = GaugeMetricFamily("pqproxy_qkd_network_link_qber", "QBER of each QKD link.", labels=["link"])
        rate = GaugeMetricFamily("pqproxy_qkd_network_link_key_rate_bits_per_second",
                                 "Secret key rate of each QKD link (0 while aborted or recovering).", labels=["link"])
        up = GaugeMetricFamily("pqproxy_qkd_network_link_up", "1 while the link makes key, else 0.", labels=["link"])
        stored = GaugeMetricFamily("pqproxy_qkd_network_link_stored_bits", "Secret bits in the link's pool.",
                                   labels=["link"])
        aborts = CounterMetricFamily("pqproxy_qkd_network_link_disturbances",
                                     "Times the link aborted (QBER over the threshold).", labels=["link"])
        used = CounterMetricFamily("pqproxy_qkd_network_link_key_bits_used", "Link key spent on relaying keys.",
                                   labels=["link"])
        for ln in net.links.values():
            reading = ln.model.read(now)
            name = ln.spec.name
            qber.add_metric([name], reading.qber)
            rate.add_metric([name], reading.key_rate_bps)
            up.add_metric([name], 1.0 if reading.state == UP else 0.0)
            stored.add_metric([name], ln.pool)
            aborts.add_metric([name], ln.model.disturbances)
            used.add_metric([name], ln.bits_used)
        yield from (qber, rate, up, stored, aborts, used)
        keys = CounterMetricFamily("pqproxy_qkd_network_pair_keys", "Keys delivered to a pair's master.",
                                   labels=["pair"])
        bits = CounterMetricFamily("pqproxy_qkd_network_pair_key_bits", "Key bits delivered to a pair.",
                                   labels=["pair"])
        refused = CounterMetricFamily("pqproxy_qkd_network_pair_refused",
                                      "Key requests refused (503: no route, or a hop without key).", labels=["pair"])
        requests = CounterMetricFamily("pqproxy_qkd_network_pair_requests", "Key requests of a pair.",
                                       labels=["pair"])
        route_rate = GaugeMetricFamily("pqproxy_qkd_network_pair_route_key_rate_bits_per_second",
                                       "The key rate a pair's route can sustain now: the least over its hops of the "
                                       "link's rate less what other pairs draw (0: no route).", labels=["pair"])
        hops = GaugeMetricFamily("pqproxy_qkd_network_pair_route_hops", "QKD links on a pair's route now (0: none).",
                                 labels=["pair"])
        for pair, stats in net.pairs.items():
            label = pair_label(pair)
            keys.add_metric([label], stats.keys)
            bits.add_metric([label], stats.bits)
            refused.add_metric([label], stats.refused)
            requests.add_metric([label], stats.requests)
            master, slave = sorted(pair)
            extension = net.status(master, slave).status_extension or {}
            route_rate.add_metric([label], extension.get("route_key_rate_bps") or 0.0)
            hops.add_metric([label], len(extension.get("route") or [None]) - 1)
        yield from (keys, bits, refused, requests, route_rate, hops)
        relayed = CounterMetricFamily("pqproxy_qkd_network_trusted_node_keys",
                                      "Keys a site saw in the clear as a trusted node on their route.", labels=["site"])
        for site in net.sites.values():
            relayed.add_metric([site.spec.name], site.relayed)
        yield relayed
        latency = HistogramMetricFamily("pqproxy_qkd_network_key_delivery_seconds",
                                        "Time to serve an enc_keys request (route, relay, delivery).")
        cumulative, buckets = 0, []
        for bound, count in zip(LATENCY_BUCKETS, net.latency_counts, strict=True):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", net.latency_count))
        latency.add_metric([], buckets, net.latency_sum)
        yield latency


class ControlServer(HTTPServer):
    def __init__(self, network: Network) -> None:
        super().__init__(read_timeout=READ_TIMEOUT, send_timeout=SEND_TIMEOUT, max_connections=16,
                         max_head=4 * 1024, max_body=1024)
        self.network = network
        self.registry = CollectorRegistry()
        self.registry.register(NetworkCollector(network))

    def _links(self) -> list[dict[str, Any]]:
        return [self.network._hop(ln, self.network.clock()) | {"disturbances": ln.model.disturbances}
                for ln in self.network.links.values()]

    async def respond(self, request: h11.Request, body: bytes, stream: Any) -> Response:
        path, _, query = request.target.decode("ascii", "replace").partition("?")
        net = self.network
        if path == "/metrics" and request.method == b"GET":
            return Response(200, generate_latest(self.registry), PROMETHEUS)
        if path == "/links" and request.method == b"GET":
            return _json(200, self._links())
        if path == "/status" and request.method == b"GET":
            args = parse_qs(query, max_num_fields=4)
            try:
                status = net.status(args["master"][-1], args["slave"][-1])
            except (KeyError, IndexError):
                return _error(400, "GET /status?master=SAE&slave=SAE")
            except KMEFault as fault:
                return _error(fault.status, str(fault))
            return _json(200, status)
        if path == "/eavesdropper" and request.method == b"POST":
            try:
                order = json.loads(body or b"{}")
                fraction = float(order["fraction"])
                net.link(str(order["link"])).model.set_eavesdropper(fraction, net.clock())
            except (ValueError, KeyError, TypeError) as exc:
                return _error(400, f'expected {{"link": "A-B", "fraction": 0..1}}: {exc}')
            log.info(json.dumps({"event": "eavesdropper", "link": order["link"], "fraction": fraction}))
            return _json(200, self._links())
        return _error(404, "GET /links, GET /status, GET /metrics, POST /eavesdropper")


async def serve_network(network: Network, out_dir: Any, *, control: tuple[str, int] | None = None,
                        task_status: trio.TaskStatus[dict[str, tuple[str, int]]] = trio.TASK_STATUS_IGNORED) -> None:
    """Every site's KME at its address (its own server certificate, the network's CA for the SAEs), and the
    control endpoint; reports the bound addresses by site (and "control")."""
    async with trio.open_nursery() as nursery:
        bound: dict[str, tuple[str, int]] = {}
        ca = str(out_dir / "ca.pem")
        for name, site in network.sites.items():
            context = server_context(str(out_dir / f"kme-{name}.pem"), str(out_dir / f"kme-{name}.key"), ca)
            listeners = await open_listeners(*site.spec.listen)
            bound[name] = listeners[0].socket.getsockname()[:2]
            await nursery.start(trio.serve_listeners, KMEServer(SiteStore(network, name), context).handle, listeners)
        if control is not None:
            control_listeners = await open_listeners(*control)
            bound["control"] = control_listeners[0].socket.getsockname()[:2]
            await nursery.start(trio.serve_listeners, ControlServer(network).handle, control_listeners)
        task_status.started(bound)
