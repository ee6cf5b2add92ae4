"""One-click unsubscribe (RFC 8058): the POST a mail service makes for its user.

In:   a stored message's bytes and a :class:`postern.dns.Resolver` (or anything with its ``txt``
      and ``addresses``: the DKIM keys and the list host's addresses, within ``dns_timeout``);
      for :func:`post` also a TLS context and an address rule (defaults: the system's trust store,
      public addresses only).
Out:  :func:`unsubscribe` (both steps: what the JMAP ``List/unsubscribe`` method runs) -> the status;
      :func:`one_click_url` -> the https URL of List-Unsubscribe the message offers one-click for;
      :func:`post` -> the HTTP status the list answered (2xx).
Fails: :class:`NotOffered` (no ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` or no https
      URI in List-Unsubscribe, RFC 8058 §3.1), :class:`NotSigned` (no valid DKIM signature
      covering both fields, RFC 8058 §4), :class:`Refused` (a URL naming a non-public address or
      with credentials, a connection or TLS failure, a timeout, a non-2xx answer or a redirect,
      which RFC 8058 §3.2 does not let the receiver follow). Each error knows its JMAP error type.

The URL is the sender's: it is checked as an outsider's input. Only https, no userinfo, every
address the name resolves to must be public (no loopback, private, link-local, reserved or
multicast address: the function runs inside the operator's network), and the connection goes to
the address that was checked (no second lookup between the check and the connect). Work budget:
one connection, TIMEOUT seconds for each step, at most MAX_RESPONSE bytes of the answer read, no
redirect followed.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

from .dns import DnsError
from .mail.header import Header

ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058 §3.1: the only value List-Unsubscribe-Post has
TIMEOUT = 10.0
MAX_RESPONSE = 64 * 1024
MAX_URL = 2048
MAX_SIGNATURES = 8  # DKIM-Signature fields verified at most (each may cost a DNS lookup)
USER_AGENT = "Postern one-click unsubscribe (RFC 8058)"


class UnsubscribeError(Exception):
    jmap_type = "serverFail"

    @property
    def text(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class NotOffered(UnsubscribeError):
    jmap_type = "invalidArguments"


class NotSigned(UnsubscribeError):
    jmap_type = "forbidden"


class Refused(UnsubscribeError):
    jmap_type = "serverFail"


def _field(header: Header, name: bytes) -> str | None:
    values = header.texts(name)
    return values[-1].strip() if values else None


def https_urls(value: str) -> list[str]:
    """The https URIs of a List-Unsubscribe value (RFC 2369 §2: each in angle brackets), in order."""
    out = []
    for part in value.split("<")[1:]:
        uri = "".join(part.split(">", 1)[0].split())  # folding whitespace inside a URI is not part of it
        if uri.lower().startswith("https://") and len(uri) <= MAX_URL:
            out.append(uri)
    return out


def signed_by_dkim(message: bytes, dnsfunc) -> bool:
    """A valid DKIM-Signature whose h= covers List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 §4)."""
    import dkim as dkimpy
    from dkim.util import InvalidTagValueList, parse_tag_value

    d = dkimpy.DKIM(message)
    signatures = [value for name, value in d.headers if name.lower() == b"dkim-signature"][:MAX_SIGNATURES]
    for idx, value in enumerate(signatures):
        try:
            tags = parse_tag_value(value)
        except InvalidTagValueList:
            continue
        covered = {h.strip().lower() for h in tags.get(b"h", b"").split(b":")}
        if not {b"list-unsubscribe", b"list-unsubscribe-post"} <= covered:
            continue
        try:
            if d.verify(idx=idx, dnsfunc=dnsfunc):
                return True
        except dkimpy.DKIMException:
            continue
    return False


def dkim_dnsfunc(resolver):
    """dkimpy's ``dnsfunc`` (name -> TXT bytes or None) over a postern.dns resolver."""

    def lookup(name, timeout=5):
        n = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        try:
            records = resolver.txt(n.rstrip("."))
        except DnsError:
            return None
        return records[0].encode("utf-8") if records else None

    return lookup


def one_click_url(message: bytes, dnsfunc) -> str:
    """The URL to POST to for a stored message, or why the message offers no one-click unsubscribe."""
    header = Header(message)
    post = _field(header, b"list-unsubscribe-post")
    if post is None or post.replace(" ", "") != ONE_CLICK:
        raise NotOffered("this message offers no one-click unsubscribe (no List-Unsubscribe-Post: "
                         f"{ONE_CLICK}, RFC 8058)")
    listed = _field(header, b"list-unsubscribe")
    urls = https_urls(listed or "")
    if not urls:
        raise NotOffered("List-Unsubscribe names no https URI (RFC 8058 §3.1)")
    if not signed_by_dkim(message, dnsfunc):
        raise NotSigned("the unsubscribe fields are not covered by a valid DKIM signature (RFC 8058 §4)")
    return urls[0]


def public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to the address that was checked, with SNI and certificate checks for the URL's host."""

    def __init__(self, host: str, address: str, port: int, context: ssl.SSLContext, timeout: float):
        super().__init__(host, port, context=context, timeout=timeout)
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, resolve: Callable[[str], list[str]], context: ssl.SSLContext | None = None,
         allow: Callable[[str], bool] = public_address, timeout: float = TIMEOUT) -> int:
    """POST ``List-Unsubscribe=One-Click`` to ``url`` (RFC 8058 §3.1); the status on 2xx.
    ``resolve``: host -> addresses (an address literal in the URL is used as it is)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise Refused("only https URLs are posted to")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL carries credentials")
    try:
        port = parts.port or 443
    except ValueError:
        raise Refused("the URL's port is not a number") from None
    host = parts.hostname
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = resolve(host)
        except (DnsError, OSError, UnicodeError) as exc:
            raise Refused(f"{host} does not resolve: {exc}") from None
    if not addresses:
        raise Refused(f"{host} does not resolve")
    if not all(allow(a) for a in addresses):
        raise Refused(f"{host} names a non-public address: not posted to")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    conn = _PinnedHTTPS(host, addresses[0], port, context or ssl.create_default_context(), timeout)
    try:
        conn.request("POST", target, body=ONE_CLICK.encode("ascii"),
                     headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT})
        response = conn.getresponse()
        response.read(MAX_RESPONSE)
        status = response.status
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        raise Refused(f"the list's server did not answer: {exc.__class__.__name__}: {exc}") from None
    finally:
        conn.close()
    if not 200 <= status < 300:
        raise Refused(f"the list's server answered {status}" + (" (a redirect is not followed, RFC 8058 §3.2)"
                                                                 if 300 <= status < 400 else ""))
    return status


def unsubscribe(message: bytes, resolver, **post_options) -> int:
    """The one-click unsubscribe a stored message offers, made: the list's 2xx status."""
    return post(one_click_url(message, dkim_dnsfunc(resolver)), resolver.addresses, **post_options)
