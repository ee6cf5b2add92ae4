"""Relay every outbound message through one smarthost.

In:   settings ``smarthost`` (``host:port``), ``smarthost_tls``
      (``starttls`` | ``tls`` | ``none``), ``smarthost_secret_id`` (Secrets
      Manager JSON ``{"username": .., "password": ..}``; read once and cached),
      ``outbound_timeout``.
Out:  per-recipient results from the smarthost.
Fails (as results): connection refused/timeout/TLS failure, 4xx at greeting,
      AUTH or MAIL -> transient for all; AUTH 5xx -> transient too (a
      configuration error the operator fixes; retrying keeps the mail);
      RCPT/DATA replies per recipient as the smarthost gives them.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import threading

from .base import RecipientResult, SendRequest, SessionFailed, Transport, from_reply, smtp_transaction, transient_all


class SmarthostTransport(Transport):
    name = "smarthost"

    def __init__(self, settings, clients, ssl_context: ssl.SSLContext | None = None):
        if not settings.smarthost:
            raise ValueError("POSTERN_SMARTHOST must be host:port for the smarthost transport")
        host, _, port = settings.smarthost.rpartition(":")
        if not host:
            host, port = settings.smarthost, "587"
        self.host, self.port = host.strip("[]"), int(port)
        self.settings = settings
        self.clients = clients
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._creds: tuple[str, str] | None = None
        self._lock = threading.Lock()

    def credentials(self) -> tuple[str, str] | None:
        if not self.settings.smarthost_secret_id:
            return None
        with self._lock:
            if self._creds is None:
                value = self.clients.secrets.get_secret_value(SecretId=self.settings.smarthost_secret_id)["SecretString"]
                d = json.loads(value)
                self._creds = (d["username"], d["password"])
            return self._creds

    def send(self, req: SendRequest) -> list[RecipientResult]:
        remote = self.host
        mode = self.settings.smarthost_tls
        timeout = self.settings.outbound_timeout
        try:
            if mode == "tls":
                client = smtplib.SMTP_SSL(local_hostname=self.settings.hostname, timeout=timeout, context=self.ssl_context)
            else:
                client = smtplib.SMTP(local_hostname=self.settings.hostname, timeout=timeout)
            code, msg = client.connect(self.host, self.port)
        except (OSError, smtplib.SMTPException) as exc:
            return transient_all(req.recipients, "4.4.1", f"smarthost {self.host}:{self.port}: {exc}", remote)
        try:
            if code != 220:
                return [from_reply(r, code if code >= 400 else 421, msg, remote) for r in req.recipients]
            client.ehlo()
            if mode == "starttls":
                client.starttls(context=self.ssl_context)
                client.ehlo()
            creds = self.credentials()
            if creds:
                try:
                    client.login(*creds)
                except smtplib.SMTPAuthenticationError as exc:
                    return transient_all(req.recipients, "4.7.0",
                                         f"smarthost authentication failed: {exc.smtp_code} {exc.smtp_error!r}", remote)
            results = smtp_transaction(client, req, remote)
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                pass
            return results
        except SessionFailed as exc:
            return exc.results
        except (OSError, ssl.SSLError, smtplib.SMTPException) as exc:
            return transient_all(req.recipients, "4.4.2", f"smarthost {self.host}: {exc.__class__.__name__}: {exc}", remote)
        finally:
            client.close()
