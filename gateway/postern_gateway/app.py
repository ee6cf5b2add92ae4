"""The gateway process: build the Backend and start every listener.

In:   :class:`~postern.config.Settings` (ports, bind address, resources) and
      :class:`~postern.aws.Clients`.
Out:  :class:`Gateway`: ``await start()`` binds every listener in
      :data:`LISTENERS` (SMTP MX, submission, submissions, IMAP, IMAPS,
      POP3, POP3S, ManageSieve) and records the bound ports in ``ports`` (port 0 binds a
      free one); ``await drain(timeout)`` stops accepting and asks every session to
      leave; ``await stop()`` closes them. :func:`serve` runs a gateway until
      SIGINT/SIGTERM (the ``postern-gateway`` command, the container's CMD) with
      ``GET /healthz`` (postern_gateway.health) and, on ECS, the OpenSessions metric
      (postern_gateway.metrics); on the signal it drains for up to
      ``POSTERN_DRAIN_TIMEOUT`` seconds, then stops. :func:`build_backend` is the
      Backend over DynamoDB + S3 + SQS.
Fails: a port in use raises OSError from ``start()`` (after closing what was
      already bound). TLS listeners (465, 993, 995) are skipped, with a
      warning, when no certificate is configured; STARTTLS/STLS are then not
      offered on the plaintext ports.

Listener modules are imported when the gateway starts, not at import time,
so importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import threading
from dataclasses import dataclass

from postern.aws import Clients, get_clients
from postern.config import Settings, get_settings
from postern.directory import dynamo_directory
from postern.store.dynamo import DynamoMailStore

from . import workers
from .backend import Backend
from .health import Health
from .metrics import SessionMetrics, ecs_dimensions
from .publish import publish
from .blocking import Blocking

log = logging.getLogger("postern.gateway")


@dataclass(frozen=True)
class Listener:
    name: str  # also the key in Gateway.ports
    port_setting: str  # Settings attribute holding the port
    module: str
    factory: str
    implicit_tls: bool = False
    options: tuple[tuple[str, str], ...] = ()  # extra keyword arguments for the factory


LISTENERS: tuple[Listener, ...] = (
    Listener("smtp", "smtp_port", "postern_gateway.smtp.server", "start_smtp", options=(("role", "mx"),)),
    Listener("submission", "submission_port", "postern_gateway.smtp.server", "start_smtp",
             options=(("role", "submission"),)),
    # RFC 8314 §3.3: submission over implicit TLS.
    Listener("submissions", "submissions_port", "postern_gateway.smtp.server", "start_smtp", implicit_tls=True,
             options=(("role", "submission"),)),
    Listener("imap", "imap_port", "postern_gateway.imap.server", "start_imap"),
    Listener("imaps", "imaps_port", "postern_gateway.imap.server", "start_imap", implicit_tls=True),
    Listener("pop3", "pop3_port", "postern_gateway.pop3.server", "start_pop3"),
    Listener("pop3s", "pop3s_port", "postern_gateway.pop3.server", "start_pop3", implicit_tls=True),
    # RFC 5804: STARTTLS only, no implicit-TLS port.
    Listener("managesieve", "managesieve_port", "postern_gateway.managesieve.server", "start_managesieve"),
)


def tls_context(settings: Settings, clients: Clients):
    """THE place TLS is wired: the trust module's server context, or None.

    ``postern_gateway.trust.tls.server_context(settings, clients)`` returns an
    ``ssl.SSLContext`` (certificate from files, Secrets Manager, S3 or a
    generated self-signed one) or None when nothing is configured."""
    try:
        from .trust import tls
    except ImportError as exc:
        if getattr(exc, "name", "") in ("postern_gateway.trust.tls", "postern_gateway.trust"):
            log.warning("TLS module not available yet; TLS listeners disabled")
            return None
        raise
    return tls.server_context(settings, clients)


def build_backend(settings: Settings, clients: Clients) -> Backend:
    """The production Backend: DynamoDB + S3 mail store and directory, S3 + SQS spooler."""
    spooler = None
    try:
        from .smtp.spool import Spooler
    except ImportError as exc:
        if getattr(exc, "name", "") != "postern_gateway.smtp.spool":
            raise
        log.warning("SMTP spooler not available yet")
    else:
        spooler = Spooler(settings, clients)
    backend = Backend(
        settings=settings,
        store=DynamoMailStore(settings, clients),
        directory=dynamo_directory(settings, clients),
        blocking=Blocking(settings.aws_threads, hash_threads=settings.password_checks),
        spooler=spooler,
        clients=clients,
    )
    from .trust.gate import attach

    attach(backend, clients)  # trust: abuse limits (state table) and the DNS checks of the MX port
    from .spam.check import client_for

    from .spam.learn import learner_for
    from .spam.relay import relay_for

    backend.spam = client_for(settings)  # rspamd on the MX port, or None (filtering off)
    # IMAP moves into/out of Junk teach it, or None; with POSTERN_LEARN_QUEUE_URL a task without rspamd
    # sends its lessons to the tasks with it, which read them (spam/relay.py)
    backend.learner, backend.lesson_reader = relay_for(backend, learner_for(backend))
    return backend


def listener_options(backend: Backend, listener: Listener) -> dict:
    """Keyword arguments a listener factory gets beyond the agreed ones (trust: the SMTP checks)."""
    options = dict(listener.options)
    if listener.factory == "start_smtp":
        from .trust.gate import smtp_checks

        options["checks"] = smtp_checks(backend, options.get("role", "mx"))
        if options.get("role", "mx") == "mx":  # after SPF/DKIM/DMARC: rspamd reads our Authentication-Results
            from .spam.check import SpamCheck

            options["checks"].append(SpamCheck(backend))
    return options


def _factory(listener: Listener):
    try:
        module = importlib.import_module(listener.module)
    except ImportError as exc:
        # Only while the protocol packages are being written: a protocol package that does not
        # import yet skips its listeners (tests/unit/test_template.py checks they all import).
        if (getattr(exc, "name", "") or "").startswith("postern_gateway"):
            log.warning("%s: %s not available (%s), listener skipped", listener.name, listener.module, exc)
            return None
        raise
    return getattr(module, listener.factory)


class Gateway:
    def __init__(self, settings: Settings | None = None, clients: Clients | None = None,
                 backend: Backend | None = None, ssl_context=None):
        self.settings = settings or get_settings()
        self.clients = clients or get_clients()
        self.backend = backend
        self.ssl_context = ssl_context
        self.servers: dict[str, asyncio.base_events.Server] = {}
        self.ports: dict[str, int] = {}
        self.expiry = None  # trust.certexpiry.ExpiryPublisher, when a certificate is served
        self.change_feed = None  # changefeed.ChangeFeed, when POSTERN_CHANGE_TOPIC_ARN is set

    async def start(self, listeners: tuple[Listener, ...] = LISTENERS) -> dict[str, int]:
        if self.backend is None:
            self.backend = build_backend(self.settings, self.clients)
        items = getattr(self.backend.store, "items", None)
        if items is not None:  # never serve a mail table written by a newer release (postern migrate)
            from postern.store import schema

            await self.backend.run(schema.check, items)
        await self._start_change_feed()
        if self.backend.lesson_reader is not None:  # lessons from the tasks without rspamd (spam/relay.py)
            self.backend.lesson_reader.start(asyncio.get_running_loop())
        if self.ssl_context is None:
            self.ssl_context = await self.backend.run(tls_context, self.settings, self.clients)
        store = getattr(self.ssl_context, "postern_store", None)
        if store is not None:
            store.start(blocking=self.backend.blocking)  # reload in place: SIGHUP, file mtime, secret version
            from .trust.certexpiry import ExpiryPublisher

            self.expiry = ExpiryPublisher(store, self.clients, self.settings.hostname,
                                          self.settings.tls_metric_interval, self.backend.blocking)
            self.expiry.start()  # the served certificate's days left, for the expiry alarm
        host = self.settings.bind
        try:
            for lst in listeners:
                port = getattr(self.settings, lst.port_setting)
                if port < 0:  # a negative port disables a listener
                    continue
                if lst.implicit_tls and self.ssl_context is None:
                    log.warning("%s: no TLS certificate configured, listener on port %d skipped", lst.name, port)
                    continue
                factory = _factory(lst)
                if factory is None:
                    continue
                server = await factory(self.backend, host, port, ssl_context=self.ssl_context,
                                       implicit_tls=lst.implicit_tls, **listener_options(self.backend, lst))
                self.servers[lst.name] = server
                self.ports[lst.name] = server.sockets[0].getsockname()[1]
        except BaseException:
            await self.stop()
            raise
        return dict(self.ports)

    async def _start_change_feed(self) -> None:
        """This task's queue on the change feed (postern_gateway.changefeed); without one (no topic
        set, or AWS refused), the IMAP watchers poll the log every POSTERN_IMAP_POLL_INTERVAL."""
        if not self.settings.change_topic_arn or self.change_feed is not None:
            return
        from . import auth
        from .changefeed import ChangeFeed
        from .imap.watcher import Runtime

        runtime, backend = Runtime.of(self.backend), self.backend

        def on_state(live: bool) -> None:
            runtime.wake_all(live)
            auth.feed_state(backend, live)

        cf = ChangeFeed(self.settings, backend.clients or self.clients, runtime.wake, on_state,
                        on_credentials=lambda accounts: auth.revoke(backend, accounts))
        try:
            await self.backend.run(cf.open)
        except Exception:  # noqa: BLE001 - serve mail regardless: polling is the fallback
            log.warning("change feed unavailable, IMAP watchers poll every %.1f s", self.settings.imap_poll_interval,
                        exc_info=True)
            return
        cf.start(asyncio.get_running_loop())
        self.change_feed = runtime.change_feed = backend.change_feed = cf

    async def stop(self, cancel_sessions: bool = False, timeout: float = 5.0) -> None:
        """Close every listener. ``cancel_sessions`` also cancels every other task on
        this loop (only for a loop the gateway owns: ``serve`` and the local stack)."""
        servers, self.servers = list(self.servers.values()), {}
        store = getattr(self.ssl_context, "postern_store", None)
        if store is not None:
            store.stop()
        if self.expiry is not None:
            self.expiry.stop()
            self.expiry = None
        for s in servers:
            s.close()
        if cancel_sessions:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)
        for s in servers:
            try:
                await asyncio.wait_for(s.wait_closed(), timeout)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - shutting down regardless
                pass
        if self.backend is not None and self.backend.lesson_reader is not None:
            self.backend.lesson_reader.stop()
        if self.change_feed is not None:  # SIGTERM drain's end: this task's queue goes with it
            cf, self.change_feed = self.change_feed, None
            try:
                await asyncio.wait_for(self.backend.run(cf.close), timeout)
            except Exception:  # noqa: BLE001 - another task's sweep removes what is left
                log.warning("change feed: close failed", exc_info=True)
        if self.backend is not None:
            self.backend.blocking.shutdown()

    async def drain(self, timeout: float) -> bool:
        """Stop accepting and ask every session to leave (postern_gateway.sessions): idle ones are
        told 421 / BYE / -ERR now, busy ones after their current command. True if all had gone
        within ``timeout`` seconds; ``stop()`` ends whatever is left."""
        for server in self.servers.values():
            asyncio.Server.close(server)  # the listening sockets only: not the sessions' own close wrappers
        if self.backend is None:
            return True
        self.backend.sessions.drain()
        return await self.backend.sessions.wait_empty(timeout)


async def serve(settings: Settings | None = None, clients: Clients | None = None) -> None:
    """Run a gateway until SIGINT or SIGTERM, then close listeners and sessions."""
    gw = Gateway(settings, clients)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    ports = await gw.start()
    health = Health(gw)
    if gw.settings.health_port >= 0:  # GET /healthz: the NLB's and ECS's health checks
        ports["health"] = await health.start(gw.settings.bind, gw.settings.health_port)
    log.info("gateway listening on %s: %s", gw.settings.bind,
             ", ".join(f"{k}={v}" for k, v in sorted(ports.items())))
    if gw.settings.publish_zone_id:  # small profile: no NLB, the task's own address is the MX target
        # its own daemon thread: it may wait through retries, and must neither hold a store worker nor delay exit
        threading.Thread(target=publish, args=(gw.settings, gw.clients), name="publish", daemon=True).start()
    metrics = None
    if gw.settings.metrics_interval > 0:
        dims = await gw.backend.run(ecs_dimensions, gw.settings.ecs_metadata_uri)
        if dims is not None:  # on ECS: OpenSessions for the services' target tracking
            metrics = loop.create_task(SessionMetrics(gw.backend.sessions, dims, gw.settings.metrics_interval).run())
    workers.pool(gw.settings)  # the work-budget processes start now, not on the first SEARCH
    try:
        await stop.wait()
        # SIGTERM (ECS: after the target groups' deregistration delay): no new sessions, every
        # open one told to leave, up to POSTERN_DRAIN_TIMEOUT for them to finish, within ECS's StopTimeout.
        log.info("gateway draining %d sessions", gw.backend.sessions.total())
        health.draining = True
        if not await gw.drain(gw.settings.drain_timeout):
            log.warning("%d sessions still open after %.0f s, closing them", gw.backend.sessions.total(),
                        gw.settings.drain_timeout)
    finally:
        log.info("gateway stopping")
        if metrics is not None:
            metrics.cancel()

        await health.stop()
        await gw.stop(cancel_sessions=True)
        workers.shutdown_pool()
