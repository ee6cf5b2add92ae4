"""``postern doctor DOMAIN`` against fake DNS (postern_local.fakedns), the local HTTPS front and the
local gateway's TLS ports: everything published as ``postern dns`` says is all ok (exit 0); an MX
target that is a CNAME, a stale MTA-STS id, a second SPF record and a missing DKIM key each give a
``wrong`` line saying what to change (exit 1). Record-level cases: tests/unit/test_doctor.py.
"""

from __future__ import annotations

import argparse
import io
import ssl

from postern.cli import main
from postern.cli_dns import gather
from postern.dnsplan import plan


def _doctor(settings, clients, domain, http_url, cafile) -> tuple[int, str]:
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        rc = main(["doctor", domain, "--https-url", http_url, "--connect", "127.0.0.1", "--cafile", cafile],
                  settings=settings, clients=clients)
    return rc, out.getvalue()


def test_doctor_on_a_domain_published_as_postern_dns_says(stack, fake_dns, new_domain, tmp_path):
    domain = new_domain()
    # The listeners' real ports (the session stack's are ephemeral; `make run`'s are in its settings).
    ports = {f"{name}_port": stack.ports[name] for name in ("imap", "imaps", "pop3", "pop3s", "submission",
                                                             "submissions")}
    settings = stack.settings.replace(dns_nameservers=(fake_dns.nameserver,), dns_timeout=2.0, **ports)
    facts = gather(argparse.Namespace(domain=domain, stack=None), settings, stack.clients)
    records, _ = plan(facts)
    for r in records:
        fake_dns.add(r.name, r.type, f'"{r.value}"' if r.type == "TXT" else r.value)
    fake_dns.add(facts.gateway_host, "A", "127.0.0.1")
    cafile = tmp_path / "gateway.pem"  # the local gateway's self-signed certificate, trusted as its own CA
    cafile.write_text(ssl.get_server_certificate(("127.0.0.1", stack.ports["imaps"])))

    rc, out = _doctor(settings, stack.clients, domain, stack.http_url, str(cafile))
    lines = out.splitlines()
    assert rc == 0, out
    assert all(ln.startswith("ok   ") for ln in lines[:-1]), out
    for what in (f"MX {domain}", "MX target", f"TXT _dmarc.{domain}", f"TXT _smtp._tls.{domain}", "MTA-STS policy",
                 "MTA-STS id", f"SRV _imaps._tcp.{domain}", f"SRV _jmap._tcp.{domain}", "Thunderbird autoconfig",
                 "Outlook autodiscover", "certificate imaps", "certificate submissions", "certificate pop3s"):
        assert any(what in ln for ln in lines), (what, out)

    fake_dns.records[f"{facts.gateway_host}."].clear()
    fake_dns.add(facts.gateway_host, "CNAME", "elb.example.net.")
    fake_dns.records[f"_mta-sts.{domain}."]["TXT"] = ['"v=STSv1; id=stale"']
    fake_dns.records[f"_smtp._tls.{domain}."]["TXT"] += ['"v=TLSRPTv1; rua=mailto:other@example.net"']
    rc, out = _doctor(settings, stack.clients, domain, stack.http_url, str(cafile))
    assert rc == 1
    wrong = [ln for ln in out.splitlines() if ln.startswith("wrong")]
    assert any(f"MX target {facts.gateway_host}: is a CNAME" in ln for ln in wrong), out
    assert any(ln.startswith("wrong MTA-STS id: publish _mta-sts.") for ln in wrong), out
    assert any(f"TXT _smtp._tls.{domain}: 2 v=tlsrptv1 records" in ln for ln in wrong), out
    assert out.splitlines()[-1].endswith(f"{len(wrong)} wrong")
