"""Server TLS for every gateway port: one SSLContext, its certificate loaded at start and reloadable.

In:   Settings. The certificate and key come from exactly one source, in this order:
        ``POSTERN_TLS_CERT_FILE`` + ``POSTERN_TLS_KEY_FILE``  PEM files (a mounted secret, certbot output)
        ``POSTERN_TLS_SECRET_ID``   Secrets Manager, SecretString JSON ``{"cert": PEM chain, "key": PEM key}``
        ``POSTERN_TLS_S3_URI``      ``s3://bucket/key`` of one PEM object holding the chain and the key
        ``POSTERN_TLS_SELF_SIGNED`` generate a key and a self-signed certificate at start (the local stack)
      none of them -> no TLS (``server_context`` returns None; listeners offer no STARTTLS).
Out:  :func:`server_context` -> ``ssl.SSLContext`` (TLS 1.2 minimum, Mozilla "intermediate"
      cipher list for TLS 1.2, TLS 1.3 suites as OpenSSL ships them, no compression, no
      renegotiation), or None. :class:`CertificateStore` holds that context and reloads it
      *in place*: ``ctx.load_cert_chain`` on the live context changes the certificate that new
      handshakes present, so listeners never restart. Reload triggers: ``reload()`` (API),
      SIGHUP (``start()`` installs a handler), for the file source a change of either file's
      mtime seen by a periodic check (``POSTERN_TLS_RELOAD_INTERVAL`` seconds), and for the
      Secrets Manager source a new AWSCURRENT version id (``DescribeSecret`` every
      ``POSTERN_TLS_SECRET_POLL_INTERVAL`` seconds; the secret itself is read only when the
      version changed: the cert function renews by writing a new version).
      ``fingerprint`` is the SHA-256 fingerprint of the certificate in use (logged at start;
      the local stack prints it so a client can pin the self-signed certificate) and
      ``not_after`` its expiry (``trust.certexpiry`` publishes the days left).
Fails: at start, an unreadable or mismatched certificate/key raises :class:`TlsConfigError`
      (the gateway must not come up half-configured). On reload, a bad new certificate is
      logged and the old one stays in service.

PEM material fetched from Secrets Manager or S3 goes through a private temporary file
(mode 0600, deleted at once) because ``load_cert_chain`` only reads files. Key material is
never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import signal
import ssl
import tempfile
import threading
from dataclasses import dataclass

log = logging.getLogger("postern.tls")

# Mozilla Server Side TLS "intermediate" (v5.7): TLS 1.2 ciphers; TLS 1.3 suites are not set here.
INTERMEDIATE_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])


class TlsConfigError(RuntimeError):
    """The configured certificate/key could not be loaded."""


def new_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION  # CRIME
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE  # intermediate: the client chooses (all choices are good)
    ctx.verify_mode = ssl.CERT_NONE  # no client certificates
    return ctx


def fingerprint_pem(cert_pem: bytes) -> str:
    der = ssl.PEM_cert_to_DER_cert(_first_cert(cert_pem).decode("ascii"))
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def _first_cert(pem: bytes) -> bytes:
    start = pem.find(b"-----BEGIN CERTIFICATE-----")
    end = pem.find(b"-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        raise TlsConfigError("no certificate in PEM data")
    return pem[start:end + len(b"-----END CERTIFICATE-----")] + b"\n"


def self_signed(hostname: str, days: int = 365) -> tuple[bytes, bytes]:
    """A P-256 key and a self-signed certificate; SAN = hostname, localhost, 127.0.0.1, ::1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64] or "localhost"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Postern self-signed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    dns_names = []
    for n in (hostname, "localhost"):
        if n and n not in dns_names:
            dns_names.append(n)
    san = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                  x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert_pem, key_pem


@dataclass(frozen=True)
class Material:
    """Where the certificate came from, and (for files) their mtimes."""

    source: str  # files | secretsmanager | s3 | self-signed
    cert_pem: bytes
    key_pem: bytes | None  # None when cert_pem also holds the key
    mtimes: tuple[float, ...] = ()
    version: str = ""  # Secrets Manager VersionId of what was read


def source_of(settings) -> str | None:
    if settings.tls_cert_file:
        return "files"
    if settings.tls_secret_id:
        return "secretsmanager"
    if settings.tls_s3_uri:
        return "s3"
    if settings.tls_self_signed:
        return "self-signed"
    return None


def _mtimes(settings) -> tuple[float, ...]:
    out = []
    for p in (settings.tls_cert_file, settings.tls_key_file or settings.tls_cert_file):
        try:
            out.append(os.stat(p).st_mtime_ns)
        except OSError:
            out.append(-1)
    return tuple(out)


def fetch(settings, clients=None, *, generated: Material | None = None) -> Material:
    """Read the certificate material from the configured source (blocking)."""
    src = source_of(settings)
    if src == "files":
        try:
            mt = _mtimes(settings)
            with open(settings.tls_cert_file, "rb") as f:
                cert = f.read()
            key = None
            if settings.tls_key_file:
                with open(settings.tls_key_file, "rb") as f:
                    key = f.read()
        except OSError as exc:
            raise TlsConfigError(f"cannot read TLS files: {exc.strerror} ({exc.filename})") from None
        return Material("files", cert, key, mt)
    if src == "secretsmanager":
        if clients is None:
            raise TlsConfigError("POSTERN_TLS_SECRET_ID needs AWS clients")
        try:
            r = clients.secrets.get_secret_value(SecretId=settings.tls_secret_id)
            doc = json.loads(r["SecretString"])
            return Material("secretsmanager", doc["cert"].encode(), doc["key"].encode(), version=r.get("VersionId", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise TlsConfigError(f"TLS secret must be JSON with cert and key ({exc.__class__.__name__})") from None
        except Exception as exc:  # botocore errors
            raise TlsConfigError(f"cannot read TLS secret: {exc.__class__.__name__}") from None
    if src == "s3":
        if clients is None:
            raise TlsConfigError("POSTERN_TLS_S3_URI needs AWS clients")
        uri = settings.tls_s3_uri
        if not uri.startswith("s3://") or "/" not in uri[5:]:
            raise TlsConfigError("POSTERN_TLS_S3_URI must be s3://bucket/key")
        bucket, key = uri[5:].split("/", 1)
        try:
            body = clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise TlsConfigError(f"cannot read TLS object from S3: {exc.__class__.__name__}") from None
        return Material("s3", body, None)
    if src == "self-signed":
        if generated is not None:
            return generated
        cert, key = self_signed(settings.hostname)
        return Material("self-signed", cert, key)
    raise TlsConfigError("no TLS certificate configured")


def current_secret_version(settings, clients) -> str:
    """The VersionId that carries AWSCURRENT (blocking; one DescribeSecret, no secret material)."""
    r = clients.secrets.describe_secret(SecretId=settings.tls_secret_id)
    for version, stages in (r.get("VersionIdsToStages") or {}).items():
        if "AWSCURRENT" in stages:
            return version
    return ""


def not_after(cert_pem: bytes) -> datetime.datetime:
    """The expiry (aware, UTC) of the first certificate in ``cert_pem``."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(_first_cert(cert_pem)).not_valid_after_utc


def _load(ctx: ssl.SSLContext, m: Material) -> None:
    """``load_cert_chain`` from PEM bytes, through 0600 temporary files removed at once."""
    with tempfile.TemporaryDirectory(prefix="postern-tls-") as d:
        os.chmod(d, 0o700)
        cert_path = os.path.join(d, "cert.pem")
        fd = os.open(cert_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(m.cert_pem)
        key_path = None
        if m.key_pem is not None:
            key_path = os.path.join(d, "key.pem")
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(m.key_pem)
        try:
            ctx.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise TlsConfigError(f"certificate/key rejected: {exc.__class__.__name__}: "
                                 f"{getattr(exc, 'reason', '') or 'invalid PEM or key mismatch'}") from None


class CertificateStore:
    """The gateway's one server SSLContext and the certificate loaded into it."""

    def __init__(self, settings, clients=None):
        self.settings = settings
        self.clients = clients
        self.context = new_context()
        self.material: Material | None = None
        self.fingerprint = ""
        self.not_after: datetime.datetime | None = None
        self.reloads = 0
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._blocking = None

    @property
    def source(self) -> str | None:
        return source_of(self.settings)

    def load(self) -> None:
        """First load (blocking); raises TlsConfigError."""
        m = fetch(self.settings, self.clients)
        _load(self.context, m)
        self.material = m
        self.fingerprint = fingerprint_pem(m.cert_pem)
        self.not_after = not_after(m.cert_pem)
        log.warning("TLS certificate loaded source=%s sha256=%s not_after=%s", m.source, self.fingerprint,
                    self.not_after.isoformat())

    def reload(self) -> bool:
        """Re-read the source and load it into the live context; True if the certificate changed.

        A failure keeps the old certificate and is logged, never raised (blocking). Serialised:
        a SIGHUP and the mtime watcher firing together load the new certificate once.
        """
        with self._lock:
            return self._reload()

    def _reload(self) -> bool:
        try:
            m = fetch(self.settings, self.clients, generated=self.material if self.source == "self-signed" else None)
            fp = fingerprint_pem(m.cert_pem)
            if self.material is not None and fp == self.fingerprint and m.key_pem == self.material.key_pem \
                    and m.cert_pem == self.material.cert_pem:
                self.material = m  # mtimes may have moved
                return False
            _load(self.context, m)
        except TlsConfigError as exc:
            log.error("TLS reload failed, keeping the current certificate: %s", exc)
            return False
        self.material = m
        self.fingerprint = fp
        self.not_after = not_after(m.cert_pem)
        self.reloads += 1
        log.warning("TLS certificate reloaded source=%s sha256=%s not_after=%s", m.source, fp,
                    self.not_after.isoformat())
        return True

    def files_changed(self) -> bool:
        return (self.source == "files" and self.material is not None
                and _mtimes(self.settings) != self.material.mtimes)

    def secret_changed(self) -> bool:
        """True when the secret's AWSCURRENT version is not the one loaded (blocking)."""
        if self.source != "secretsmanager" or self.material is None:
            return False
        try:
            current = current_secret_version(self.settings, self.clients)
        except Exception as exc:  # botocore errors: try again at the next check
            log.warning("TLS secret version check failed: %s", exc.__class__.__name__)
            return False
        return bool(current) and current != self.material.version

    # --- triggers ------------------------------------------------------------------
    def start(self, *, install_sighup: bool = True, blocking=None) -> None:
        """On the running loop: SIGHUP handler and the periodic mtime check (file source).

        ``blocking`` (the gateway's :class:`~postern_gateway.blocking.Blocking`) runs the reloads,
        which read files or call AWS; without it the loop's default executor does.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._blocking = blocking
        if install_sighup:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        interval = {"files": self.settings.tls_reload_interval,
                    "secretsmanager": self.settings.tls_secret_poll_interval}.get(self.source, 0)
        if interval > 0:
            self._task = loop.create_task(self._watch(interval), name="tls-reload-watch")

    def _on_sighup(self) -> None:
        log.warning("SIGHUP: reloading TLS certificate")
        loop = self._loop or asyncio.get_event_loop()
        loop.create_task(self._run_reload())

    async def _run_blocking(self, fn):
        if self._blocking is not None:
            return await self._blocking.run(fn)
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    async def _run_reload(self) -> bool:
        return await self._run_blocking(self.reload)

    async def _changed(self) -> bool:
        if self.source == "files":
            return self.files_changed()  # two stat() calls: cheap enough for the loop
        return await self._run_blocking(self.secret_changed)

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                if await self._changed():
                    await self._run_reload()
            except Exception:  # the watcher never dies
                log.exception("TLS reload check failed")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_signal_handler(signal.SIGHUP)


def certificate_store(settings, clients=None) -> CertificateStore | None:
    """A loaded :class:`CertificateStore`, or None when no TLS source is configured."""
    if source_of(settings) is None:
        return None
    store = CertificateStore(settings, clients)
    store.load()
    return store


def server_context(settings, clients=None) -> ssl.SSLContext | None:
    """The server SSLContext for every listener, or None when TLS is not configured.

    The context carries its store as ``ctx.postern_store`` so the app can ``start()``
    the reload triggers (``store = ctx.postern_store; store.start()``).
    """
    store = certificate_store(settings, clients)
    if store is None:
        return None
    store.context.postern_store = store
    return store.context
