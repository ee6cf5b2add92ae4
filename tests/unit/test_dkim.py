"""DKIM: `postern domain dkim` stores the key encrypted and prints the record; mail
signed with it verifies with dkimpy against exactly that printed record."""

from __future__ import annotations

import argparse
import re

import pytest

from postern import dkim
from postern.cli_outbound import format_dkim, register_domain
from postern.envelope import OutboundJob
from postern.pipeline.deliver import Deliverer
from postern.transports.base import Transport

RAW = (b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: signed\r\n"
       b"Date: Fri, 15 Jan 2027 08:00:00 +0000\r\nMessage-ID: <m1@example.test>\r\n\r\nbody line\r\n")


def printed_records(text: str) -> dict[str, str]:
    """{name: value} from the command's output: "<name> TXT" then the value on the next line."""
    lines = text.splitlines()
    return {m.group(1): lines[i + 1].strip() for i, line in enumerate(lines)
            if (m := re.match(r"^(\S+\._domainkey\.\S+) TXT$", line))}


def run_cli(settings, clients, *argv) -> str:
    parser = argparse.ArgumentParser()
    register_domain(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["dkim", *argv])
    from postern.cli_outbound import domain_dkim

    where, keys = domain_dkim(settings, clients, args.domain, args.algorithm, args.bits)
    return format_dkim(args.domain, where, keys)


class NullTransport(Transport):
    name = "null"

    def send(self, req):  # pragma: no cover - prepare() is what these tests use
        raise AssertionError


@pytest.mark.parametrize("store, algorithm, n", [("secretsmanager", "rsa", 1), ("ssm", "both", 2),
                                                  ("secretsmanager", "ed25519", 1)])
def test_generated_key_signs_and_verifies_against_printed_record(aws, store, algorithm, n):
    settings, clients, _ = aws
    settings = settings.replace(dkim_store=store)
    out = run_cli(settings, clients, "example.test", "--algorithm", algorithm)
    records = printed_records(out)
    assert len(records) == n
    if algorithm != "ed25519":
        assert records["postern._domainkey.example.test"].startswith("v=DKIM1; k=rsa; p=")
    # stored encrypted where the settings say, readable back
    if store == "ssm":
        p = clients.ssm.get_parameter(Name="/postern/dkim/example.test", WithDecryption=True)["Parameter"]
        assert p["Type"] == "SecureString"
    else:
        assert "postern/dkim/example.test" in out
        clients.secrets.describe_secret(SecretId="postern/dkim/example.test")

    d = Deliverer(settings, clients, transport=NullTransport())
    job = OutboundJob(queue_id="Q1", s3_key="spool/Q1", mail_from="alice@example.test", domain="remote.test",
                      recipients=("bob@remote.test",), trace_headers="Received: from client by gw\r\n")
    data = d.prepare(job, RAW, 1_800_000_000.0)
    assert data.endswith(b"Received: from client by gw\r\n" + RAW)  # original bytes untouched
    assert data.count(b"DKIM-Signature:") == n
    assert dkim.verify_all(data, dkim.dnsfunc_for(records)) == [True] * n
    tampered = data.replace(b"body line", b"body lime")
    assert dkim.verify_all(tampered, dkim.dnsfunc_for(records)) == [False] * n


def test_unsigned_when_domain_has_no_key(aws):
    settings, clients, _ = aws
    d = Deliverer(settings, clients, transport=NullTransport())
    job = OutboundJob(queue_id="Q1", s3_key="k", mail_from="alice@example.test", domain="remote.test",
                      recipients=("bob@remote.test",))
    data = d.prepare(job, RAW, 1_800_000_000.0)
    assert b"DKIM-Signature" not in data and data.endswith(RAW)


def test_regenerating_replaces_the_key(aws):
    settings, clients, _ = aws
    first = printed_records(run_cli(settings, clients, "example.test"))
    second = printed_records(run_cli(settings, clients, "example.test"))
    assert first != second
    keys = dkim.KeyStore(settings, clients).get("example.test")
    assert keys[0].txt_record() == second["postern._domainkey.example.test"]


def test_zone_line_splits_long_rsa_record():
    k = dkim.generate_rsa("postern")
    line = k.zone_line("example.test")
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', line))
    assert "".join(re.findall(r'"([^"]*)"', line)) == k.txt_record()


def test_signing_domain_is_the_from_header_domain():
    assert dkim.header_from_domain(RAW) == "example.test"
    assert dkim.header_from_domain(b"Subject: x\r\n\r\n") is None
