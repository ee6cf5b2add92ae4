"""The embedded local stack: everything ``make run`` starts, in one process.

In:   the process environment (users override any default below) and
      template.yaml.
Out:  :class:`LocalStack`. ``start()``: a moto server on 127.0.0.1 in place
      of AWS; the environment a deployed stack gives its code (fake
      credentials, ``AWS_ENDPOINT_URL``, every ``POSTERN_*`` resource
      variable); the bucket, queues and tables the template declares; a demo
      domain and user; the gateway's listeners on loopback; and the pollers
      feeding SQS batches to the real Lambda handlers; with ``rspamd=True`` (make run)
      rspamd and Redis when installed (:mod:`.rspamd`). ``drain()`` pumps the
      queues until they are empty (tests start with ``background=False`` and
      drain for determinism); ``stop()`` undoes it all, environment included.
Fails: a port in use raises OSError from ``start()``, after stopping what
      had started.

Local differences live here and in environment variables only: the
production code sees an endpoint URL and resource names, nothing else.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from .lambdas import LocalFunction, runtime_environment, worker_functions
from .pollers import Poller, Pollers
from .resources import LocalResources, create_resources, physical_name
from .rules import RulesConfig
from .rules.identities import ADMIN, Identities
from .rules.proxy import RulesServer
from .rules.roles import Roles, Unresolved, load_roles
from .template import REPO_ROOT, load_template

log = logging.getLogger("postern.local")

# Applied as {**LOCAL_DEFAULTS, **os.environ}: anything the user sets wins.
LOCAL_DEFAULTS: dict[str, str] = {
    "POSTERN_BIND": "127.0.0.1",
    "POSTERN_HOSTNAME": "mail.example.test",
    "POSTERN_SMTP_PORT": "2525",
    "POSTERN_SUBMISSION_PORT": "1587",
    "POSTERN_SUBMISSIONS_PORT": "1465",
    "POSTERN_IMAP_PORT": "1143",
    "POSTERN_IMAPS_PORT": "1993",
    "POSTERN_POP3_PORT": "1110",
    "POSTERN_POP3S_PORT": "1995",
    "POSTERN_MANAGESIEVE_PORT": "4190",
    "POSTERN_ALLOW_PLAINTEXT_AUTH": "true",
    "POSTERN_TLS_SELF_SIGNED": "true",
    "POSTERN_LOCAL_MOTO_PORT": "4566",
    "POSTERN_DEMO_USER": "alice@example.test",
    # Locally outbound mail goes to a smarthost: the local sink (a FakeMX on POSTERN_LOCAL_SMARTHOST_PORT)
    # unless POSTERN_SMARTHOST names a real one. (mx needs the deliver VPC option: AWS blocks port 25.)
    "POSTERN_OUTBOUND_TRANSPORT": "smarthost",
    "POSTERN_LOCAL_SMARTHOST_PORT": "2526",
    # The HTTPS function behind a local stand-in for CloudFront and the HTTP API (postern_local.httpfront).
    "POSTERN_LOCAL_HTTP_PORT": "8080",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "postern",
    "POWERTOOLS_METRICS_NAMESPACE": "Postern",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "LOG_LEVEL": "WARNING",
}

PORT_VARS: dict[str, str] = {
    "smtp": "POSTERN_SMTP_PORT",
    "submission": "POSTERN_SUBMISSION_PORT",
    "submissions": "POSTERN_SUBMISSIONS_PORT",
    "imap": "POSTERN_IMAP_PORT",
    "imaps": "POSTERN_IMAPS_PORT",
    "pop3": "POSTERN_POP3_PORT",
    "pop3s": "POSTERN_POP3S_PORT",
    "managesieve": "POSTERN_MANAGESIEVE_PORT",
}

# Seconds before a record a handler failed is visible again (in place of the queue's visibility
# timeout). Deliver too: its retry schedule re-enqueues (postern.retry), so a failed record is a crash.
FAILURE_VISIBILITY: dict[str, int] = {"RouterFunction": 1, "StoreFunction": 1, "DeliverFunction": 1, "NdrFunction": 1}

_instances = itertools.count(1)


def template_parameters(env: Mapping[str, str]) -> dict[str, str]:
    """Values for the template's parameters that have no default, as the local stack runs."""
    domain = env.get("POSTERN_DEMO_USER", "alice@example.test").rsplit("@", 1)[-1]
    return {"MailDomain": domain, "GatewayHostname": env.get("POSTERN_HOSTNAME", "mail.example.test"),
            "GatewayImage": "postern-gateway:local"}


class LocalStack:
    """``LocalStack(ephemeral_ports=True, background=False)`` is what tests use."""

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        *,
        ephemeral_ports: bool = False,
        background: bool = True,
        failure_visibility: Mapping[str, int] | None = None,
        handler_wrapper: Callable[[str, Callable], Callable] | None = None,
        gateway: bool = True,
        prefix: str | None = None,
        outbound_dir=None,
        template: str | None = None,
        rspamd: bool = False,
        poller_concurrency: int = 1,
    ):
        n = next(_instances)
        self.prefix = prefix or ("postern" if n == 1 else f"postern{n}")
        self.overrides = dict(overrides or {})
        self.ephemeral_ports = ephemeral_ports
        self.background = background
        self.failure_visibility = dict(FAILURE_VISIBILITY if failure_visibility is None else failure_visibility)
        if ephemeral_ports and failure_visibility is None:
            self.failure_visibility = {k: 0 for k in self.failure_visibility}
        self.handler_wrapper = handler_wrapper
        self.with_gateway = gateway
        self.outbound_dir = outbound_dir  # pathlib.Path: where the local smarthost sink writes what leaves
        self.smarthost_sink = None  # the FakeMX outbound mail goes to when no POSTERN_SMARTHOST is set
        self.template_path = template  # a copy of template.yaml (tests that change the template); None: the real one
        self.want_rspamd = rspamd  # make run: start rspamd + Redis when installed (postern_local.rspamd)
        self.poller_concurrency = poller_concurrency  # background batches at once per SQS source (pollers.py)
        self.rspamd = None  # the running postern_local.rspamd.LocalRspamd
        self.spam_filter = "off"  # what the banner says about spam filtering
        self.proxy: RulesServer | None = None  # moto behind the AWS-rules proxy (postern_local.rules)
        self.identities = Identities()
        self.roles: Roles | None = None
        self.gateway_clients = None  # the gateway's Clients: its own role's credentials
        self.esm_clients: dict[str, object] = {}  # function -> SQS client of its event source mapping
        self.env: dict[str, str] = {}
        self.resources: LocalResources | None = None
        self.functions: dict[str, LocalFunction] = {}
        self.workers: dict = {}  # function -> its postern_local.worker.RemoteHandler (the unwrapped handler)
        self.pollers: Pollers | None = None
        self.settings = None
        self.clients = None
        self.directory = None
        self.store = None
        self.gateway = None
        self.https = None  # postern_local.httpfront.HttpFront: the HTTPS function on POSTERN_LOCAL_HTTP_PORT
        self.demo_user = ""
        self.demo_password = ""
        self._saved_env: dict[str, str] | None = None
        self._saved_clients = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------
    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from postern import aws, config

        self._saved_env = dict(os.environ)
        self._saved_clients = aws._default  # a stack started inside another gives the outer one back on stop
        env = {**LOCAL_DEFAULTS, **os.environ, **self.overrides}
        if not env.get("POSTERN_SRS_SECRET_ID") and not env.get("POSTERN_SRS_SECRET"):
            # The template keeps it in Secrets Manager (SrsSecret); locally a setting, and no secret id
            # (the functions' processes would otherwise get the template's, naming no local secret).
            env["POSTERN_SRS_SECRET"] = secrets.token_urlsafe(24)
            env["POSTERN_SRS_SECRET_ID"] = ""
        if not env.get("POSTERN_HTTPS_ORIGIN_SECRET"):
            # Deployed, CloudFront sends the HttpsOriginSecret; locally the front (httpfront.py) sends this.
            env["POSTERN_HTTPS_ORIGIN_SECRET"] = secrets.token_urlsafe(24)
        env["POSTERN_HTTPS_ORIGIN_SECRET_ID"] = ""
        env.setdefault("POSTERN_ADMIN_ADDRESS", env["POSTERN_DEMO_USER"])  # postmaster@/abuse@ of every domain
        if self.ephemeral_ports:
            env.update({var: "0" for var in PORT_VARS.values()})
            env["POSTERN_LOCAL_MOTO_PORT"] = "0"
            env["POSTERN_LOCAL_SMARTHOST_PORT"] = "0"
            env["POSTERN_LOCAL_HTTP_PORT"] = "0"
        if env.get("POSTERN_OUTBOUND_TRANSPORT") == "smarthost" and not env.get("POSTERN_SMARTHOST"):
            from .fakemx import FakeMX

            self.smarthost_sink = FakeMX("smarthost.local", spool_dir=self.outbound_dir)
            port = self.smarthost_sink.start(int(env["POSTERN_LOCAL_SMARTHOST_PORT"]))
            env.update({"POSTERN_SMARTHOST": f"127.0.0.1:{port}", "POSTERN_SMARTHOST_TLS": "none"})
        if self.want_rspamd:
            self._start_rspamd(env)
        region = env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"]
        self.proxy = RulesServer(self.identities, region, RulesConfig.from_env(env),
                                 port=int(env["POSTERN_LOCAL_MOTO_PORT"])).start()
        env.update(ADMIN.env())  # the operator's (fake) credentials: never a real account, whatever the shell has
        env.update({"AWS_ENDPOINT_URL": self.proxy.endpoint, "AWS_DEFAULT_REGION": region, "AWS_REGION": region})
        for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            env.pop(var, None)
            os.environ.pop(var, None)
        os.environ.update(env)
        self._reset_process_caches(config, aws)

        bootstrap = aws.Clients(config.Settings.from_env())
        template = load_template(self.template_path)
        self.resources = create_resources(bootstrap, prefix=self.prefix, template=template)
        env.update(self.resources.environment())
        os.environ.update(self.resources.environment())
        self.env = env
        self.roles = load_roles(template, lambda logical, rtype: physical_name(self.resources, logical, rtype),
                                region, self.prefix, template_parameters(env), self.resources.queues)
        self.identities.set_roles(self.roles)
        self._reset_process_caches(config, aws)
        self.settings = config.get_settings()
        self.clients = aws.get_clients()  # the administrator's (tests, CLI, set-up); components have their own
        self.gateway_clients = aws.Clients(self.settings,
                                           session=self.identities.for_component("gateway").session(region))

        from postern.directory import dynamo_directory
        from postern.store.dynamo import DynamoMailStore

        self.directory = dynamo_directory(self.settings, self.clients)
        self.store = DynamoMailStore(self.settings, self.clients)
        from postern.store import schema

        schema.migrate(self.store.items)  # what `postern migrate` does after a deploy: the layout version
        self._create_demo(env)

        self._bind_https_front(template)  # its port is in the push URLs the functions' environments name
        self.functions = worker_functions(template, self._function_env)
        self.workers = {name: fn.handler for name, fn in self.functions.items()}
        for fn in self.functions.values():
            if fn.sources or fn.streams:
                fn.handler.prewarm()  # Init overlaps the rest of the start-up
        self.pollers = Pollers(self._pollers(), concurrency=self.poller_concurrency)
        if self.with_gateway:
            self._start_gateway()
        self._start_https_front(template)
        if self.background:
            self.pollers.start()

    def _function_env(self, logical: str, spec: dict) -> dict[str, str]:
        """A function's process environment: the template's Environment (Globals and its own) where
        the local stack sets nothing, the stack's, its own role's credentials, Lambda's runtime's."""
        template_env = {}
        variables = (self.roles.cfn["Resources"][logical]["Properties"].get("Environment") or {}).get("Variables", {})
        for name, value in variables.items():
            try:
                resolved = self.roles.resolver.value(value)
            except Unresolved:
                continue
            if resolved is not None:
                template_env[name] = str(resolved)
        region = self.settings.region
        return {**os.environ, **template_env, **self.env, **self.identities.for_component(logical).env(),
                **runtime_environment(logical, spec, region)}

    @staticmethod
    def _reset_process_caches(config, aws) -> None:
        config.get_settings.cache_clear()
        aws.reset_clients()

    def _create_demo(self, env: Mapping[str, str]) -> None:
        from postern.address import parse_address
        from postern.errors import AlreadyExists

        self.demo_user = parse_address(env["POSTERN_DEMO_USER"]).canonical
        self.demo_password = env.get("POSTERN_DEMO_PASSWORD") or secrets.token_urlsafe(12)
        try:
            self.directory.add_domain(self.demo_user.split("@", 1)[1])
        except AlreadyExists:
            pass
        try:
            self.directory.add_user(self.demo_user, self.demo_password)
        except AlreadyExists:
            self.directory.set_password(self.demo_user, self.demo_password)
        self.store.ensure_mailboxes(self.demo_user)  # as `postern user add` does

    def _pollers(self) -> list[Poller]:
        out = []
        for fn in self.functions.values():
            if self.handler_wrapper is not None:
                fn.handler = self.handler_wrapper(fn.logical_id, fn.handler)
            # Lambda's event source mapping receives and deletes with the function's execution role.
            esm = self.identities.for_component(fn.logical_id).session(self.settings.region).client(
                "sqs", config=self.clients.config)
            self.esm_clients[fn.logical_id] = esm
            for src in fn.sources:
                out.append(Poller(
                    function=fn,
                    source=src,
                    queue_url=self.resources.queues[src.queue],
                    queue_arn=self.resources.queue_arns[src.queue],
                    sqs=esm,
                    local_sqs=self.clients.sqs,
                    region=self.settings.region,
                    failure_visibility=self.failure_visibility.get(fn.logical_id),
                ))
            for src in fn.streams:  # the stream event source mapping (AWSLambdaDynamoDBExecutionRole)
                from .streams import StreamPoller

                out.append(StreamPoller(
                    function=fn, source=src, stream_arn=self.resources.streams[src.table],
                    streams=self.identities.for_component(fn.logical_id).session(self.settings.region).client(
                        "dynamodbstreams", config=self.clients.config),
                    region=self.settings.region,
                    dlq_url=self.resources.queues.get(src.on_failure, ""), sqs=self.clients.sqs,
                ))
        return out

    def _start_rspamd(self, env: dict[str, str]) -> None:
        """rspamd and Redis from Debian's packages when installed (``POSTERN_LOCAL_RSPAMD=off``: never;
        ``POSTERN_RSPAMD_URL`` already set: that one is used). Without them the gateway accepts every
        message ``unchecked``, and the banner says so."""
        from . import rspamd

        if env.get("POSTERN_RSPAMD_URL"):
            self.spam_filter = f"rspamd at {env['POSTERN_RSPAMD_URL']} (POSTERN_RSPAMD_URL)"
            return
        if env.get("POSTERN_LOCAL_RSPAMD", "auto").lower() in ("off", "false", "0", "no"):
            self.spam_filter = "OFF (POSTERN_LOCAL_RSPAMD=off): every message is accepted unchecked"
            return
        if not rspamd.available():
            self.spam_filter = ("OFF: rspamd and redis-server are not installed (apt-get install rspamd "
                                "redis-server); every message is accepted unchecked")
            return
        self.rspamd = rspamd.LocalRspamd(clamd=env.get("POSTERN_LOCAL_CLAMD", "")).start()
        env.update({"POSTERN_RSPAMD_URL": self.rspamd.url, "POSTERN_RSPAMD_CONTROLLER_URL": self.rspamd.controller_url})
        antivirus = f"antivirus: clamd at {self.rspamd.clamd}" if self.rspamd.clamd else "antivirus off"
        self.spam_filter = (f"rspamd {rspamd.version()} at {self.rspamd.url} (Redis on {self.rspamd.redis_port}: "
                            f"Bayes learning, greylisting; {antivirus})")

    def _start_gateway(self) -> None:
        from postern_gateway.app import Gateway

        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self._loop)
            ready.set()
            self._loop.run_forever()

        self._loop_thread = threading.Thread(target=run, name="postern-gateway", daemon=True)
        self._loop_thread.start()
        ready.wait()
        self.gateway = Gateway(self.settings, self.gateway_clients)
        asyncio.run_coroutine_threadsafe(self.gateway.start(), self._loop).result(timeout=60)

    def _bind_https_front(self, template: dict) -> None:
        """The local front's port, bound before the functions start: the JMAP WebSocket (PushApi's
        stage) is served on it too, and POSTERN_PUSH_URL / POSTERN_PUSH_ENDPOINT name it."""
        port = int(self.env.get("POSTERN_LOCAL_HTTP_PORT", "8080"))
        # no front, no socket: nothing may point at the template's (real AWS) WebSocket API
        self.env.update({"POSTERN_PUSH_URL": "", "POSTERN_PUSH_ENDPOINT": ""})
        if "HttpsFunction" not in template.get("Resources", {}) or port < 0:
            return
        from .httpfront import AppFiles, HttpFront, routing, security_headers
        from .wsfront import push_stage

        routes = routing(template)
        self.https = HttpFront(None, None, self.env["POSTERN_HTTPS_ORIGIN_SECRET"], [], region=self.settings.region,
                               port=port, routes=routes, app=AppFiles(self.webmail_dir, routes.root_object))
        bound = self.https.bind()
        # The response headers policy with this machine's origins in place of the push API's and the
        # mail bucket's (presigned uploads and downloads go to the moto endpoint here)
        self.https.headers = security_headers(template, {"PushOrigin": f"ws://127.0.0.1:{bound}",
                                                         "BlobOrigins": self.proxy.endpoint})
        stage = push_stage(template)
        if stage:
            urls = {"POSTERN_PUSH_URL": f"ws://127.0.0.1:{bound}/{stage}",
                    "POSTERN_PUSH_ENDPOINT": f"http://127.0.0.1:{bound}/{stage}"}
            self.env.update(urls)
            os.environ.update(urls)

    def _start_https_front(self, template: dict) -> None:
        """The HTTPS function behind the local CloudFront/HTTP API stand-in (postern_local.httpfront),
        and the push function behind the WebSocket API's (postern_local.wsfront) on the same port."""
        fn = self.functions.get("HttpsFunction")
        if fn is None or self.https is None:
            return
        # The client configuration it serves names the listeners' real ports (ephemeral ones in tests).
        handler = self.workers["HttpsFunction"]  # the RemoteHandler itself (handler_wrapper wraps fn.handler)
        handler.env.update({PORT_VARS[name]: str(p) for name, p in self.ports.items() if name in PORT_VARS})
        self.https.handler, self.https.context = handler, fn.context
        push = self.functions.get("PushFunction")
        stage = self.env.get("POSTERN_PUSH_URL", "").rsplit("/", 1)[-1]
        if push is not None and stage:
            from .rules.roles import ACCOUNT
            from .wsfront import WebSocketApi

            self.https.ws = WebSocketApi(self.workers["PushFunction"], push.context, self.roles.resolver.ref("PushApi"),
                                         stage, self.settings.region, ACCOUNT, self._may)
        self.https.start()

    def _may(self, access_key: str, action: str, resource: str) -> bool:
        """Does the principal of ``access_key`` hold ``action`` on ``resource`` (the template's IAM policies)?"""
        p = self.identities.lookup(access_key)
        return p is not None and (p.is_admin or bool(p.role.policy.decide(action, resource)))

    def drain(self, max_rounds: int = 50) -> int:
        """Run the pollers until every queue is empty; returns the messages handled."""
        return self.pollers.drain(max_rounds=max_rounds)

    def stop(self) -> None:
        from postern import aws, config

        if self.pollers is not None:
            self.pollers.stop()
        if self.https is not None:
            self.https.stop()
            self.https = None
        for worker in self.workers.values():
            worker.close()
        if self._loop is not None:
            if self.gateway is not None:
                try:
                    asyncio.run_coroutine_threadsafe(self.gateway.stop(cancel_sessions=True), self._loop).result(15)
                except Exception:  # noqa: BLE001 - stopping regardless
                    log.exception("gateway stop failed")
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=10)
            self._loop.close()
            self._loop = None
        if self.smarthost_sink is not None:
            self.smarthost_sink.stop()
            self.smarthost_sink = None
        if self.rspamd is not None:
            self.rspamd.stop()
            self.rspamd = None
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self._saved_env is not None:
            os.environ.clear()
            os.environ.update(self._saved_env)
            self._saved_env = None
        self._reset_process_caches(config, aws)
        with aws._default_lock:
            aws._default, self._saved_clients = self._saved_clients, None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what clients need -------------------------------------------------
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def ports(self) -> dict[str, int]:
        """Bound port per listener name (smtp, submission, submissions, imap, imaps, pop3, pop3s)."""
        return dict(self.gateway.ports) if self.gateway is not None else {}

    def _port(self, name: str) -> int | None:
        return self.ports.get(name)

    @property
    def http_url(self) -> str:
        """The local HTTPS front's base URL (plain HTTP on loopback), or "" when it is off."""
        return self.https.url if self.https is not None else ""

    @property
    def webmail_dir(self) -> Path:
        """The built browser app the front serves at / (POSTERN_WEBMAIL_DIR, default webmail/dist)."""
        return Path(self.env.get("POSTERN_WEBMAIL_DIR") or REPO_ROOT / "webmail" / "dist")

    @property
    def webmail_url(self) -> str:
        """The webmail's URL ("" without the front, or without a built app to serve)."""
        return f"{self.http_url}/" if self.http_url and (self.webmail_dir / "index.html").is_file() else ""

    smtp_port = property(lambda self: self._port("smtp"))
    submission_port = property(lambda self: self._port("submission"))
    submissions_port = property(lambda self: self._port("submissions"))
    imap_port = property(lambda self: self._port("imap"))
    imaps_port = property(lambda self: self._port("imaps"))
    pop3_port = property(lambda self: self._port("pop3"))
    pop3s_port = property(lambda self: self._port("pop3s"))
    managesieve_port = property(lambda self: self._port("managesieve"))

    @property
    def endpoint(self) -> str:
        return self.proxy.endpoint if self.proxy else ""

    def exported_env(self) -> dict[str, str]:
        """What another shell needs to use this stack (the admin CLI): endpoint, fake
        credentials, region and every resource variable."""
        keys = ["AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION", *ADMIN.env()]
        out = {k: self.env[k] for k in keys if k in self.env}
        out.update(self.resources.environment() if self.resources else {})
        return out

    def queue_url(self, logical: str) -> str:
        return self.resources.queues[logical]

    def queue_count(self, logical: str) -> int:
        """Messages in a queue (visible + in flight + delayed), e.g. ``queue_count("InboundDLQ")``."""
        attrs = self.clients.sqs.get_queue_attributes(
            QueueUrl=self.queue_url(logical),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                            "ApproximateNumberOfMessagesDelayed"],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def receive(self, logical: str, max_messages: int = 10) -> list[dict]:
        """Receive (without deleting) messages of a queue nobody consumes, e.g. a DLQ."""
        r = self.clients.sqs.receive_message(QueueUrl=self.queue_url(logical), MaxNumberOfMessages=max_messages,
                                             AttributeNames=["All"], VisibilityTimeout=0)
        return r.get("Messages", [])
