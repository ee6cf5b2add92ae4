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
