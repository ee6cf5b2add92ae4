"""The mail table's layout version and ``postern migrate`` / ``postern sweep``."""

from __future__ import annotations

import io

import pytest

from postern.items import MemoryItems
from postern.store import schema


def test_a_new_table_starts_at_the_current_layout_and_steps_run_in_order(monkeypatch):
    items = MemoryItems()
    assert schema.version(items) is None and schema.check(items) == schema.CURRENT
    assert schema.migrate(items) == (None, schema.CURRENT)
    assert schema.version(items) == schema.CURRENT
    ran = []
    monkeypatch.setattr(schema, "CURRENT", schema.CURRENT + 2)
    monkeypatch.setattr(schema, "MIGRATIONS", {v: (lambda it, say, v=v: ran.append(v))
                                               for v in (schema.CURRENT - 2, schema.CURRENT - 1)})
    assert schema.migrate(items, dry_run=True)[1] == schema.CURRENT and not ran  # says, changes nothing
    assert schema.migrate(items) == (schema.CURRENT - 2, schema.CURRENT)
    assert ran == [schema.CURRENT - 2, schema.CURRENT - 1] and schema.version(items) == schema.CURRENT


def test_code_refuses_a_table_written_by_a_newer_release():
    items = MemoryItems()
    schema.migrate(items)
    items.put({"pk": "META", "sk": "SCHEMA", "version": schema.CURRENT + 1})
    with pytest.raises(schema.SchemaError):
        schema.check(items)
    with pytest.raises(schema.SchemaError):
        schema.migrate(items)


@pytest.mark.dynamo
def test_postern_migrate_and_sweep_on_the_deployed_store(aws):
    from postern import mailboxes
    from postern.cli import main
    from postern.directory import dynamo_directory
    from postern.store.dynamo import DynamoMailStore

    settings, clients, _ = aws

    def run(*argv) -> str:
        out = io.StringIO()
        assert main(list(argv), settings=settings, clients=clients, out=out) == 0
        return out.getvalue()

    assert run("migrate") == f"mail table layout {schema.CURRENT} (was new)\n"
    assert run("migrate") == f"mail table layout {schema.CURRENT}\n"
    dynamo_directory(settings, clients).add_domain("example.test")
    dynamo_directory(settings, clients).add_user("carol@example.test", "pw-carol-123")
    store = DynamoMailStore(settings, clients)
    mailboxes.ensure_defaults(store, "carol@example.test")
    mailboxes.create(store, "carol@example.test", "Old")
    store.append("carol@example.test", "Old", b"Subject: x\r\n\r\nx\r\n")
    mailboxes.delete(store, "carol@example.test", "Old")
    assert run("sweep") == "carol@example.test\treleased 1 messages of deleted mailboxes\n"
    assert run("sweep", "carol@example.test") == ""


def test_an_entry_holds_its_header_block_once_compressed_and_reads_back_any_stored_form():
    """The trace prefix is stored once (``pf``), the rest of the header block compressed: a delivered
    message's entry fits one DynamoDB write unit (1 KB) where the block stored whole took two."""
    from postern.store import records as R
    from postern_local.requests import item_size

    prefix = (b"Return-Path: <someone@remote.test>\r\nDelivered-To: alice@example.test\r\n"
              b"Received: from client.remote.test (client.remote.test [192.0.2.10])\r\n\tby mx.example.test"
              b" (Postern) with ESMTPS id 0662113b7f0ec5015a0df89d\r\n\tfor <alice@example.test>;"
              b" Mon, 07 Dec 2026 20:42:13 +0000\r\n"
              b"Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=remote.test; dkim=none;"
              b" dmarc=none header.from=remote.test\r\n")
    own = (b"From: someone@remote.test\r\nTo: alice@example.test\r\nSubject: cost bench\r\n"
           b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <4b7e6cdcf35fcf546a08d@remote.test>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
    header = prefix + own
    m = {"uid": 7, "fl": ["$Junk"], "id": 1.5, "sz": 10240, "bl": "spool/0662113b7f0ec5015a0df89d", "rs": 10000,
         "hl": len(header), "e": "E" + "a" * 24, "th": "T" + "b" * 24}
    item = R.message_item("alice@example.test", "M" + "c" * 24, m, 42, prefix, header)
    assert "hd" not in item and "hz" in item and prefix not in bytes(item["hz"])
    dynamo = {k: ({"B": v} if isinstance(v, bytes) else {"S": str(v)}) for k, v in item.items() if k != "fl"}
    old_form = {**dynamo, "hd": {"B": header}}
    old_form.pop("hz")
    assert item_size(dynamo) <= 1024 < item_size(old_form)  # one write unit instead of two
    assert R.meta(item).header == header and R.meta(item, light=True).header is None
    assert R.header_of({"hd": header}) == header  # entries written before
    assert R.header_of({"pf": prefix, "hr": own}) == header  # incompressible rest, stored as it is
    assert R.header_of({"pf": prefix}) is None  # over HEADER_CAP: not kept (read from the blob)
    tiny = R.header_fields(b"", b"X: 1\r\n\r\n")
    assert tiny == {"hr": b"X: 1\r\n\r\n"}  # compression that does not pay is not used
    assert R.header_fields(b"P: 1\r\n", b"other\r\n\r\n") == {"hd": b"other\r\n\r\n"}  # not its prefix: whole
