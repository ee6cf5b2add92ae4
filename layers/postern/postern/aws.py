"""AWS clients, built lazily from one boto3 session.

In:   :class:`postern.config.Settings` (region, thread count). The endpoint is
      never a setting of ours: boto3 honours ``AWS_ENDPOINT_URL`` itself, which
      is all the local stack changes.
Out:  :class:`Clients`, whose attributes (``s3``, ``sqs``, ``dynamodb``, ...)
      build a client on first use, under a lock, from a single session:
      boto3's default session is not thread-safe to build clients from.
Fails: nothing at construction; a client error surfaces at the call site.

Clients are never built at import time, so ``mock_aws`` and endpoint
changes made before the first call take effect.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

from .config import Settings, get_settings

_SERVICES = {
    "s3": "s3",
    "sqs": "sqs",
    "dynamodb": "dynamodb",
    "sesv2": "sesv2",
    "secrets": "secretsmanager",
    "ssm": "ssm",
    "cloudwatch": "cloudwatch",
    "sns": "sns",
}
LONG_POLL_READ_TIMEOUT = 40  # seconds: above SQS's longest wait (20 s), for the long-polling client


class Clients:
    """Lazily built boto3 clients sharing one session and one connection pool size."""

    def __init__(self, settings: Settings | None = None, session: boto3.session.Session | None = None):
        self._settings = settings or get_settings()
        self._session = session
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._hooks: list[tuple[str, Any]] = []
        self.config = Config(
            region_name=self._settings.region,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=20,
            max_pool_connections=max(10, self._settings.aws_threads + 4),
        )

    def register_hook(self, event_name: str, handler) -> None:
        """Register a botocore event hook on every client (built or future).

        Used by request counters and by the local fault layer; production code
        registers none.
        """
        with self._lock:
            self._hooks.append((event_name, handler))
            for client in self._clients.values():
                client.meta.events.register(event_name, handler)

    def client(self, name: str):
        with self._lock:
            c = self._clients.get(name)
            if c is None:
                if self._session is None:
                    self._session = boto3.session.Session()
                config = self.config
                if name == "sqs-long-poll":  # a receive that waits 20 s must not hit the 20 s read timeout
                    config = config.merge(Config(read_timeout=LONG_POLL_READ_TIMEOUT))
                if name == "s3-presign":  # presigned URLs and POST policies: SigV4 in every region (postern.presign)
                    config = config.merge(Config(signature_version="s3v4"))
                c = self._session.client(_SERVICES.get(name, name.split("-", 1)[0]), config=config)
                for event_name, handler in self._hooks:
                    c.meta.events.register(event_name, handler)
                self._clients[name] = c
            return c

    @property
    def s3(self):
        return self.client("s3")

    @property
    def sqs(self):
        return self.client("sqs")

    @property
    def dynamodb(self):
        return self.client("dynamodb")

    @property
    def sesv2(self):
        return self.client("sesv2")

    @property
    def secrets(self):
        return self.client("secrets")

    @property
    def ssm(self):
        return self.client("ssm")

    @property
    def cloudwatch(self):
        return self.client("cloudwatch")

    @property
    def sns(self):
        return self.client("sns")

    def connections(self, endpoint: str):
        """The API Gateway ``@connections`` management API of one WebSocket stage (its callback URL,
        ``https://{api-id}.execute-api.{region}.amazonaws.com/{stage}``: an endpoint of its own)."""
        with self._lock:
            c = self._clients.get(f"connections {endpoint}")
            if c is None:
                if self._session is None:
                    self._session = boto3.session.Session()
                c = self._session.client("apigatewaymanagementapi", endpoint_url=endpoint, config=self.config)
                for event_name, handler in self._hooks:
                    c.meta.events.register(event_name, handler)
                self._clients[f"connections {endpoint}"] = c
            return c

    @property
    def s3_presign(self):
        """S3 for presigned GET URLs and POST policies (SigV4; postern.presign)."""
        return self.client("s3-presign")

    @property
    def sqs_long_poll(self):
        """SQS for long polls (ReceiveMessage WaitTimeSeconds=20): a read timeout above the wait."""
        return self.client("sqs-long-poll")


_default: Clients | None = None
_default_lock = threading.Lock()


def get_clients() -> Clients:
    """The process-wide :class:`Clients` (built on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Clients()
        return _default


def reset_clients() -> None:
    """Forget the process-wide clients (tests switching between mocks)."""
    global _default
    with _default_lock:
        _default = None
