"""DKIM keys per domain: generate, store encrypted, publish, sign (dkimpy).

In:   a domain; ``settings.dkim_selector`` (RSA key selector; the ed25519 key
      uses ``<selector>-ed25519``); ``settings.dkim_store``: ``secretsmanager``
      (secret ``postern/dkim/<domain>``) or ``ssm`` (SecureString parameter
      ``/postern/dkim/<domain>``), both encrypted at rest with KMS.
Out:  :func:`generate_rsa` / :func:`generate_ed25519` -> :class:`DkimKey`
      (``record_name(domain)`` and ``txt_record()`` are what to publish in
      DNS); :class:`KeyStore` ``get``/``put``; :func:`sign` -> the
      ``DKIM-Signature:`` header bytes to prepend (RSA first, then ed25519:
      RFC 8463 §4 dual signing), never touching the message bytes.
Fails: ``KeyStore.get`` returns ``[]`` when the domain has no key (mail goes
      out unsigned) and raises :class:`~postern.errors.StoreUnavailable` when
      the store cannot be read (the deliver function then retries rather
      than sending mail unsigned that should have been signed).

The stored JSON: ``{"keys": [{"selector", "algorithm", "private", "public"}]}``
with ``private`` a PKCS#1 PEM (rsa) or the base64 32-byte seed (ed25519).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import asdict, dataclass

import dkim as dkimpy
from botocore.exceptions import BotoCoreError, ClientError

from .errors import StoreUnavailable
from .mail.author import author
from .mail.header import Header

CACHE_SECONDS = 300
# Headers we sign when present (RFC 6376 §5.4.1's recommended set, minus trace fields).
SIGNED_HEADERS = (b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"in-reply-to",
                  b"references", b"mime-version", b"content-type", b"content-transfer-encoding",
                  b"auto-submitted", b"list-id", b"list-unsubscribe")


@dataclass(frozen=True)
class DkimKey:
    selector: str
    algorithm: str  # "rsa" | "ed25519"
    private: str
    public: str  # base64 p= value

    def record_name(self, domain: str) -> str:
        return f"{self.selector}._domainkey.{domain.lower()}"

    def txt_record(self) -> str:
        """The TXT record value (RFC 6376 §3.6.1)."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public}"

    def zone_line(self, domain: str) -> str:
        """A zone-file line, the value split into <=255-byte strings (RFC 1035 §3.3.14)."""
        txt = self.txt_record()
        chunks = " ".join(f'"{txt[i:i + 250]}"' for i in range(0, len(txt), 250))
        return f"{self.record_name(domain)}. IN TXT ( {chunks} )"

    @property
    def signature_algorithm(self) -> bytes:
        return b"rsa-sha256" if self.algorithm == "rsa" else b"ed25519-sha256"

    @property
    def private_bytes(self) -> bytes:
        return self.private.encode("ascii")


# Key generation is the CLI's job (`postern domain dkim`): cryptography is imported there, not at
# module import, so the deliver function, which only signs (dkimpy), loads no native code it
# does not use and its layer need not ship cryptography.
def generate_rsa(selector: str, bits: int = 2048) -> DkimKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode("ascii")
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return DkimKey(selector, "rsa", pem, base64.b64encode(der).decode("ascii"))


def generate_ed25519(selector: str) -> DkimKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return DkimKey(selector, "ed25519", base64.b64encode(seed).decode("ascii"), base64.b64encode(pub).decode("ascii"))


def generate(settings, algorithm: str = "rsa", bits: int = 2048) -> list[DkimKey]:
    """``algorithm``: rsa | ed25519 | both."""
    keys = []
    if algorithm in ("rsa", "both"):
        keys.append(generate_rsa(settings.dkim_selector, bits))
    if algorithm in ("ed25519", "both"):
        keys.append(generate_ed25519(f"{settings.dkim_selector}-ed25519"))
    if not keys:
        raise ValueError("algorithm must be rsa, ed25519 or both")
    return keys


def secret_name(domain: str) -> str:
    return f"postern/dkim/{domain.lower()}"


def parameter_name(domain: str) -> str:
    return f"/postern/dkim/{domain.lower()}"


def _encode(keys: list[DkimKey]) -> str:
    return json.dumps({"keys": [asdict(k) for k in keys]})


def _decode(text: str) -> list[DkimKey]:
    return [DkimKey(**k) for k in json.loads(text).get("keys", [])]


class KeyStore:
    """DKIM keys in Secrets Manager or SSM, cached per process for CACHE_SECONDS."""

    def __init__(self, settings, clients):
        self.settings = settings
        self.clients = clients
        self._cache: dict[str, tuple[list[DkimKey], float]] = {}
        self._lock = threading.Lock()

    def get(self, domain: str) -> list[DkimKey]:
        d = domain.lower()
        with self._lock:
            hit = self._cache.get(d)
            if hit and hit[1] > time.monotonic():
                return hit[0]
        keys = self._read(d)
        with self._lock:
            self._cache[d] = (keys, time.monotonic() + CACHE_SECONDS)
        return keys

    def _read(self, domain: str) -> list[DkimKey]:
        try:
            if self.settings.dkim_store == "ssm":
                r = self.clients.ssm.get_parameter(Name=parameter_name(domain), WithDecryption=True)
                return _decode(r["Parameter"]["Value"])
            r = self.clients.secrets.get_secret_value(SecretId=secret_name(domain))
            return _decode(r["SecretString"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ResourceNotFoundException", "ParameterNotFound"):
                return []
            raise StoreUnavailable(f"DKIM key store: {exc.response.get('Error', {}).get('Code')}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"DKIM key store unreachable: {exc}") from exc

    def put(self, domain: str, keys: list[DkimKey]) -> str:
        """Store (replacing) the domain's keys; returns where they went."""
        d = domain.lower()
        body = _encode(keys)
        if self.settings.dkim_store == "ssm":
            name = parameter_name(d)
            self.clients.ssm.put_parameter(Name=name, Value=body, Type="SecureString", Overwrite=True,
                                           Description=f"Postern DKIM keys for {d}")
        else:
            name = secret_name(d)
            try:
                self.clients.secrets.create_secret(Name=name, SecretString=body, Description=f"Postern DKIM keys for {d}")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceExistsException":
                    raise
                self.clients.secrets.put_secret_value(SecretId=name, SecretString=body)
        with self._lock:
            self._cache.pop(d, None)
        return name


def header_from_domain(data: bytes) -> str | None:
    """The domain of the first ``From:`` address (what DKIM alignment is judged on, RFC 7489 §3.1),
    read by the one parser (:mod:`postern.mail`)."""
    domains = author(Header(data)).domains
    return domains[0] if domains else None


def sign(data: bytes, domain: str, keys: list[DkimKey]) -> bytes:
    """``DKIM-Signature:`` header bytes for ``data`` (CRLF, ready to prepend)."""
    out = b""
    header = Header(data)
    include = [h for h in SIGNED_HEADERS if header.count(h)] or [b"from"]
    for key in keys:
        sig = dkimpy.sign(data, key.selector.encode(), domain.encode(), key.private_bytes,
                          canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=key.signature_algorithm,
                          include_headers=include, linesep=b"\r\n")
        out += sig
    return out


def dnsfunc_for(records: dict[str, str]):
    """A dkimpy ``dnsfunc`` answering TXT lookups from ``{name: txt}`` (tests, ``postern domain dkim --check``)."""

    def lookup(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        txt = records.get(n.rstrip(".").lower())
        return txt.encode() if txt is not None else None

    return lookup


def verify_all(message: bytes, dnsfunc) -> list[bool]:
    """Verify every DKIM-Signature in ``message`` (dkimpy's ``verify`` checks only the first)."""
    d = dkimpy.DKIM(message)
    count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
    out = []
    for i in range(count):
        try:
            out.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
        except dkimpy.DKIMException:
            out.append(False)
    return out
