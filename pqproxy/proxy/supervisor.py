"""Process model: one supervisor, N worker processes sharing the listening ports with SO_REUSEPORT.

The supervisor validates the configuration before anything starts, serves the admin endpoint (metrics
of all workers through prometheus-client's multiprocess mode), restarts a worker that dies, and turns
signals into actions:

- SIGHUP: re-validate the configuration; if it is good, every worker reloads it (new certificates and
  routes for new connections; open connections are untouched); if not, keep running and say why.
- SIGTERM / SIGINT: drain. /readyz turns 503, workers stop accepting and give open connections
  ``limits.drain_timeout`` seconds to finish, then the supervisor exits.

Session-ticket keys are made here and handed to every worker, so a ticket from one worker resumes on
another; they live only in memory and survive reloads. (With ``ticket_key_file`` every process reads their seed
from that file instead, so replicas share them too: ``ticket_keys.py``.) They rotate every
``TICKET_KEY_PERIOD`` by a one-way ratchet that every process runs on its own clock (``TicketKeys``): the
workers agree without talking, and a key dropped (after the ticket lifetime) is gone from every process,
supervisor included.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ..tls.session import TicketKeys
from .config import (
    ClientSettings,
    ConfigError,
    ServerSettings,
    build_client_runtime,
    build_server_runtime,
    client_settings,
    parse_host_port,
    read_toml,
    server_settings,
)
from .ticket_keys import TICKET_KEY_PERIOD, TICKET_LIFETIME

log = logging.getLogger("pqproxy")
# Ticket keys: a new one every hour; each is kept for as long as a ticket sealed under it may live (the
# engine's ticket lifetime), then dropped.
# A worker that keeps dying is not restarted forever: at most this many restarts per minute.
MAX_RESTARTS_PER_MINUTE = 10
WORKER_START_TIMEOUT = 30.0
# Seconds between a worker's checks that its supervisor is still alive (see _watch_parent).
PARENT_CHECK_INTERVAL = 0.5


@dataclass(frozen=True)
class ConfigSource:
    """Where the configuration comes from: re-read on every reload, in the supervisor and the workers."""

    mode: str  # "server" or "client"
    path: str | None
    flags: Mapping[str, Any]

    def load(self) -> ServerSettings | ClientSettings:
        data = read_toml(self.path) if self.path else None
        source = self.path or "command line"
        if self.mode == "server":
            return server_settings(data, self.flags, source)
        return client_settings(data, self.flags, source)

    def build(self, ticket_keys: TicketKeys | list[bytes]) -> Any:
        settings = self.load()
        if isinstance(settings, ServerSettings):
            return build_server_runtime(settings, ticket_keys)
        return build_client_runtime(settings)


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper()), format="%(message)s", force=True)
    # Our lines are "%(message)s" (JSON made by the caller): the caller's file and line, thread and process
    # names that logging would otherwise look up for every record are never printed (logging's HOWTO,
    # "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def raise_fd_limit() -> None:
    """Each connection costs two descriptors; lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


# --- the worker process -----------------------------------------------------------------------------


def worker_main(source: ConfigSource, ticket_keys: TicketKeys, ready: Any, worker_id: int) -> None:
    """Entry point of a worker process (multiprocessing 'spawn')."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor turns Ctrl-C into SIGTERM for us
    # A SIGHUP before _worker listens for it would kill us (the default action); this worker reads the
    # configuration as it starts anyway, so there is nothing to reload yet.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    settings = source.load()
    setup_logging(settings.log_level)
    raise_fd_limit()
    try:
        trio.run(_worker, source, ticket_keys, ready, worker_id)
    except KeyboardInterrupt:
        pass


async def _worker(source: ConfigSource, ticket_keys: TicketKeys, ready: Any, worker_id: int) -> None:
    from .metrics import Metrics
    from .sidecar import Proxy

    metrics = Metrics()
    proxy = Proxy(source.build(ticket_keys), metrics, worker_id)
    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve)
            watchdog = trio.CancelScope()
            nursery.start_soon(_watch_parent, os.getppid(), watchdog)
            ready.set()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    _reload(proxy, source, ticket_keys, worker_id)
                else:
                    drain = proxy.runtime.limits.drain_timeout
                    await proxy.drain(drain)
                    break
            watchdog.cancel()
            nursery.cancel_scope.deadline = trio.current_time() + 1


async def _watch_parent(parent: int, scope: trio.CancelScope) -> None:
    """Drain and exit when the supervisor is gone (SIGKILL, OOM killer): it can no longer tell us to.

    Without this the workers lived on as orphans, still accepting on the SO_REUSEPORT port, so a restarted
    pqproxy would have shared its port with workers running the old configuration.
    """
    with scope:
        while os.getppid() == parent:
            await trio.sleep(PARENT_CHECK_INTERVAL)
        log.warning(json.dumps({"event": "supervisor_gone", "pid": os.getpid()}))
        os.kill(os.getpid(), signal.SIGTERM)  # the same drain as a SIGTERM from the supervisor


def _reload(proxy: Any, source: ConfigSource, ticket_keys: TicketKeys, worker_id: int) -> None:
    try:
        runtime = source.build(ticket_keys)
    except Exception as exc:  # ConfigError, or anything else: a reload must not kill the worker
        log.error(json.dumps({"event": "reload_failed", "worker": worker_id, "error": _describe(exc)}))
        return
    old = proxy.runtime
    if _addresses(old) != _addresses(runtime):
        log.warning(json.dumps({"event": "reload_listeners_unchanged", "worker": worker_id,
                                "note": "listen addresses change only on restart"}))
    proxy.runtime = runtime
    log.info(json.dumps({"event": "reloaded", "worker": worker_id}))


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"


def _addresses(runtime: Any) -> list[tuple[str, int]]:
    if hasattr(runtime, "listeners"):
        return [listener.address for listener in runtime.listeners]
    return [runtime.address]


# --- the supervisor ---------------------------------------------------------------------------------


class Supervisor:
    def __init__(self, source: ConfigSource, settings: ServerSettings | ClientSettings) -> None:
        self.source = source
        self.settings = settings
        self.workers = settings.workers or os.cpu_count() or 1
        self.ticket_keys = TicketKeys.fresh(time.time(), TICKET_KEY_PERIOD, TICKET_LIFETIME)
        self.ctx = multiprocessing.get_context("spawn")
        self.processes: dict[int, Any] = {}
        self.ready_events: dict[int, Any] = {}
        self.draining = False
        self.restarts: list[float] = []
        self.metrics: Any = None

    def _spawn(self, worker_id: int) -> None:
        ready = self.ctx.Event()
        self.ticket_keys.at(time.time())  # a worker (re)started now gets today's keys, not ones dropped since
        process = self.ctx.Process(target=worker_main, args=(self.source, self.ticket_keys, ready, worker_id),
                                   name=f"pqproxy-worker-{worker_id}", daemon=False)
        process.start()
        self.processes[worker_id] = process
        self.ready_events[worker_id] = ready

    def ready(self) -> bool:
        return not self.draining and all(
            e.is_set() and self.processes[i].is_alive() for i, e in self.ready_events.items()
        )

    async def run(self) -> int:
        # Signals are received from the very start: a SIGTERM or SIGHUP while the workers start used to kill
        # the supervisor (the default action) and leave its workers running; now it waits in the queue.
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            return await self._run(signals)

    async def _run(self, signals: Any) -> int:
        from .metrics import Metrics

        self.metrics = Metrics()
        for worker_id in range(self.workers):
            self._spawn(worker_id)
        try:
            with trio.fail_after(WORKER_START_TIMEOUT):
                while not all(e.is_set() for e in self.ready_events.values()):
                    if any(p.exitcode is not None for p in self.processes.values()):
                        log.error(json.dumps({"event": "worker_failed_to_start"}))
                        self._signal_all(signal.SIGTERM)
                        return 1
                    await trio.sleep(0.02)
        except trio.TooSlowError:
            log.error(json.dumps({"event": "worker_start_timeout"}))
            self._signal_all(signal.SIGKILL)
            return 1
        log.info(json.dumps({"event": "started", "mode": self.source.mode, "workers": self.workers,
                             "pid": os.getpid()}))
        async with trio.open_nursery() as nursery:
            if self.settings.admin:
                from .admin import serve_admin

                host, port = parse_host_port(self.settings.admin, default_host="127.0.0.1")
                bound = await nursery.start(partial(serve_admin, host, port, self.metrics.render, self.ready,
                                                    draining=lambda: self.draining))
                log.info(json.dumps({"event": "admin", "address": "{}:{}".format(*bound)}))
            nursery.start_soon(self._watch_workers)
            code = await self._handle_signals(signals)
            nursery.cancel_scope.cancel()
        return code

    async def _handle_signals(self, signals: Any) -> int:
        async for signum in signals:
            if signum == signal.SIGHUP:
                self._reload()
                continue
            return await self._drain()
        return 0

    def _reload(self) -> None:
        try:
            # Validate, and check the files load, before telling workers.
            runtime = self.source.build(self.ticket_keys)
        except Exception as exc:  # ConfigError, or anything else: a reload must not kill us
            log.error(json.dumps({"event": "reload_failed", "error": _describe(exc)}))
            self.metrics.reload("error")
            return
        # The supervisor's own copy too: _drain's budget comes from limits.drain_timeout, which the workers
        # take from the new configuration (with the old copy a longer new drain_timeout got workers killed).
        self.settings = runtime.settings
        self.metrics.reload("ok")
        self._signal_all(signal.SIGHUP)

    async def _drain(self) -> int:
        self.draining = True
        self._signal_all(signal.SIGTERM)
        budget = self.settings.limits.drain_timeout + 5
        with trio.move_on_after(budget):
            while any(p.is_alive() for p in self.processes.values()):
                await trio.sleep(0.05)
        stragglers = [p for p in self.processes.values() if p.is_alive()]
        for process in stragglers:
            process.kill()
        for process in self.processes.values():
            process.join(1)
        log.info(json.dumps({"event": "stopped", "killed": len(stragglers)}))
        return 0

    def _signal_all(self, signum: int) -> None:
        for process in self.processes.values():
            if process.is_alive() and process.pid:
                try:
                    os.kill(process.pid, signum)
                except ProcessLookupError:
                    pass

    async def _watch_workers(self) -> None:
        while True:
            await trio.sleep(0.25)
            if self.draining:
                continue
            for worker_id, process in list(self.processes.items()):
                if process.is_alive():
                    continue
                self.metrics.mark_process_dead(process.pid)
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < 60] + [now]
                if len(self.restarts) > MAX_RESTARTS_PER_MINUTE:
                    log.error(json.dumps({"event": "worker_restart_limit", "worker": worker_id}))
                    continue
                log.warning(json.dumps({"event": "worker_restarted", "worker": worker_id,
                                        "exitcode": process.exitcode}))
                self._spawn(worker_id)


METRICS_DIR_PREFIX = "pqproxy-metrics-"


def remove_orphaned_metrics_dirs(root: str | None = None) -> list[str]:
    """Remove the metrics directories of supervisors that died without cleaning up (SIGKILL, OOM killer).

    Only ``pqproxy-metrics-<pid>-*`` directories of ours whose supervisor pid is gone: a live pid (ours, or
    a stranger's after pid reuse) keeps its directory, and directories without a pid are left alone.
    """
    removed = []
    base = Path(root or tempfile.gettempdir())
    for entry in base.glob(f"{METRICS_DIR_PREFIX}*-*"):
        pid_text = entry.name[len(METRICS_DIR_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
        except (PermissionError, OSError):
            continue  # alive (someone else's process), or not ours to judge
    return removed


def run(mode: str, path: str | None, flags: Mapping[str, Any],
        printer: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> int:
    """The CLI's entry: validate, then run the supervisor until drained. Exit 2 on a bad configuration."""
    source = ConfigSource(mode, path, dict(flags))
    try:
        settings = source.load()
        source.build([os.urandom(32)])  # certificates load, CAs parse: fail now, not in every worker
    except ConfigError as exc:
        printer(f"pqproxy: invalid configuration:\n{exc}")
        return 2
    setup_logging(settings.log_level)
    raise_fd_limit()
    remove_orphaned_metrics_dirs()
    metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return trio.run(Supervisor(source, settings).run)
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
