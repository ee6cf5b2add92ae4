"""A tiny authoritative DNS server for tests: dnspython over UDP on 127.0.0.1, port 0.

In:   records added with :meth:`FakeDNS.add` (``add("example.org", "MX", "10 mx.example.org.")``),
      names that answer SERVFAIL (:meth:`servfail`) or never answer (:meth:`drop`, timeouts).
Out:  ``start()`` -> port; point ``POSTERN_DNS_NAMESERVERS=127.0.0.1:<port>`` at it.
      A name with no records at all answers NXDOMAIN; a known name without
      records of the asked type answers NOERROR with no answer (NoAnswer).
Fails: malformed queries are ignored.
"""

from __future__ import annotations

import socket
import threading
from collections import defaultdict

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def _n(name: str) -> str:
    return name.lower().rstrip(".") + "."


class FakeDNS:
    def __init__(self):
        self.records: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.servfail_names: set[str] = set()
        self.drop_names: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self.port = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def add(self, name: str, rdtype: str, *values: str) -> FakeDNS:
        self.records[_n(name)][rdtype.upper()].extend(values)
        return self

    def exists(self, name: str) -> FakeDNS:
        self.records[_n(name)]  # noqa: B018 - creates the node (NOERROR/NODATA)
        return self

    def servfail(self, name: str) -> FakeDNS:
        self.servfail_names.add(_n(name))
        return self

    def drop(self, name: str) -> FakeDNS:
        self.drop_names.add(_n(name))
        return self

    def clear(self) -> None:
        self.records.clear()
        self.servfail_names.clear()
        self.drop_names.clear()

    def _answer(self, wire: bytes) -> bytes | None:
        q = dns.message.from_wire(wire)
        resp = dns.message.make_response(q)
        resp.flags |= dns.flags.AA
        if not q.question:
            return resp.to_wire()
        question = q.question[0]
        name = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if name in self.drop_names:
            return None
        if name in self.servfail_names:
            resp.set_rcode(dns.rcode.SERVFAIL)
            return resp.to_wire()
        if name not in self.records:
            resp.set_rcode(dns.rcode.NXDOMAIN)
            return resp.to_wire()
        values = self.records[name].get(rdtype, [])
        if values:
            resp.answer.append(dns.rrset.from_text_list(name, 60, dns.rdataclass.IN, rdtype, values))
        return resp.to_wire()

    def start(self) -> int:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]

        def run():
            while not self._stop.is_set():
                try:
                    wire, addr = self._sock.recvfrom(4096)
                except (TimeoutError, socket.timeout):
                    continue
                except OSError:
                    return
                try:
                    out = self._answer(wire)
                except Exception:  # noqa: BLE001 - a test server ignores junk
                    continue
                if out is not None:
                    self._sock.sendto(out, addr)

        self._thread = threading.Thread(target=run, name="fake-dns", daemon=True)
        self._thread.start()
        return self.port

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> FakeDNS:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
