"""Sieve scripts per user, in the directory table: what ManageSieve, JMAP, the CLI and delivery share.

In:   an item layer over the directory table (:mod:`postern.items`:
      ``DynamoItems`` deployed, ``MemoryItems`` in tests), the limits
      (``POSTERN_SIEVE_MAX_SCRIPT_SIZE``, 64 KiB; ``POSTERN_SIEVE_MAX_SCRIPTS``,
      10), scripts as UTF-8 bytes or text.
Out:  :class:`ScriptRepository`:
        ``check(text)`` (CHECKSCRIPT: compile only), ``havespace(user, name, size)``,
        ``put(user, name, text)`` (PUTSCRIPT: compiled first, so a script with
        an error is never stored), ``get``/``get_by_id``, ``list`` (name, id,
        size, active, updated), ``activate(user, name)`` (SETACTIVE; ``""`` or
        ``deactivate`` for none), ``delete`` (not the active one), ``rename``
        (keeps the id and the active mark), ``active(user)``,
        ``managed_rules(user)`` / ``put_managed_rules`` (the JSON behind
        :mod:`.managed`), ``for_delivery(user)`` (the active script and the
        managed rules in one BatchGetItem) and :func:`program` (the compiled
        form, cached per process by the script's digest: a warm store function
        compiles each script once, not once per delivery).
Fails: :class:`~.errors.SieveSyntaxError` (line:column) for a script that does
      not compile; :class:`~.errors.ScriptQuota` (``QUOTA/MAXSIZE``,
      ``QUOTA/MAXSCRIPTS``), :class:`~.errors.ScriptNotFound`,
      :class:`~.errors.ScriptExists`, :class:`~.errors.ScriptActive`,
      :class:`~.errors.ScriptNameInvalid` - each carrying its ManageSieve
      response code (RFC 5804 §1.3); StoreUnavailable from the table.

Items (keys built in :mod:`postern.keys`): ``S#<user>/SCRIPT#<name>`` per script
(stable ``id`` for JMAP's SieveScript, RFC 9661), ``S#<user>/ACTIVE`` naming
the active script and holding a copy of its text (so delivery reads one
batch, not the whole partition), ``S#<user>/MANAGED`` the managed rules.
Written in this order (script, then ACTIVE) so a crash leaves at worst the
previous active text, which ``activate`` rewrites.

The number of scripts is counted with one Query before a new name is stored;
two uploads racing past the limit may leave one script too many (harmless,
and the next upload is refused until one is deleted).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from .. import keys
from ..errors import AlreadyExists, PosternError
from .errors import (ScriptActive, ScriptExists, ScriptNameInvalid, ScriptNotFound, ScriptQuota,
                     SieveSyntaxError)
from .interpreter import compile_script
from .lexer import decode
from .limits import HARD_MAX_SCRIPT_BYTES, MAX_SCRIPT_BYTES
from .program import Program

MAX_NAME = 128  # characters (RFC 5804 §1.6: servers accept at least 128)
DEFAULT_MAX_SCRIPTS = 10


@dataclass(frozen=True)
class ScriptInfo:
    name: str
    id: str  # stable across renames (JMAP SieveScript id)
    size: int  # bytes of UTF-8
    active: bool = False
    updated: float = 0.0


@dataclass(frozen=True)
class Script:
    info: ScriptInfo
    text: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def validate_name(name: str) -> str:
    """RFC 5804 §1.6: 1..128 characters, no controls, no line/paragraph separators."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise ScriptNameInvalid(f"A script name has 1 to {MAX_NAME} characters")
    for c in name:
        o = ord(c)
        if o < 0x20 or 0x7F <= o <= 0x9F or c in "\u2028\u2029" or unicodedata.category(c) == "Cs":
            raise ScriptNameInvalid("A script name may not hold control characters")
    return name


def _text(source: bytes | str) -> str:
    if isinstance(source, str):
        try:
            source.encode("utf-8")
        except UnicodeEncodeError:
            raise SieveSyntaxError("the script is not valid UTF-8") from None
        return source
    return decode(source)


class _Cache:
    """digest -> compiled program, least recently used out first."""

    def __init__(self, size: int = 256):
        self.size = size
        self._d: OrderedDict[str, Program] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str, text: str) -> Program:
        with self._lock:
            p = self._d.get(digest)
            if p is not None:
                self._d.move_to_end(digest)
                return p
        p = compile_script(text, HARD_MAX_SCRIPT_BYTES)  # stored scripts compiled under the limit of their day
        with self._lock:
            self._d[digest] = p
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return p


_PROGRAMS = _Cache()


def program(text: str, digest: str | None = None) -> Program:
    """The compiled form of a stored script (cached per process by digest)."""
    return _PROGRAMS.get(digest or hashlib.sha256(text.encode("utf-8")).hexdigest(), text)


class ScriptRepository:
    def __init__(self, items, max_size: int = MAX_SCRIPT_BYTES, max_scripts: int = DEFAULT_MAX_SCRIPTS,
                 clock=time.time):
        self.items = items
        self.max_size = max_size
        self.max_scripts = max_scripts
        self.clock = clock
        self._batch: dict[tuple[str, str], dict | None] | None = None  # delivery items read for a batch (batch())

    # --- checks -----------------------------------------------------------------------------------
    def check(self, source: bytes | str) -> Program:
        """CHECKSCRIPT: compile under this repository's size limit."""
        text = _text(source)
        size = len(text.encode("utf-8"))
        if size > self.max_size:
            raise ScriptQuota(f"Script too large ({size} bytes, at most {self.max_size})", "QUOTA/MAXSIZE")
        return compile_script(text, self.max_size)

    def havespace(self, user: str, name: str, size: int) -> None:
        """HAVESPACE (RFC 5804 §2.3): would a script of ``size`` bytes under ``name`` fit?"""
        validate_name(name)
        if size > self.max_size:
            raise ScriptQuota(f"Script too large ({size} bytes, at most {self.max_size})", "QUOTA/MAXSIZE")
        if self.items.get(keys.sieve_script_key(user, name)) is None:
            if len(self._script_items(user)) >= self.max_scripts:
                raise ScriptQuota(f"At most {self.max_scripts} scripts", "QUOTA/MAXSCRIPTS")

    # --- reads ------------------------------------------------------------------------------------
    def _script_items(self, user: str) -> list[dict]:
        return list(self.items.query(keys.sieve_pk(user), keys.SCRIPT_PREFIX))

    def _active_name(self, user: str) -> str | None:
        item = self.items.get(keys.sieve_active_key(user))
        return item.get("name") if item else None

    @staticmethod
    def _info(item: dict, active: str | None) -> ScriptInfo:
        return ScriptInfo(item["name"], item["id"], int(item.get("size", 0)), item["name"] == active,
                          float(item.get("updated", 0.0)))

    def list(self, user: str) -> list[ScriptInfo]:
        active = self._active_name(user)
        return [self._info(i, active) for i in self._script_items(user)]

    def get(self, user: str, name: str) -> Script:
        item = self.items.get(keys.sieve_script_key(user, name))
        if item is None:
            raise ScriptNotFound(f"No script named {name!r}")
        return Script(self._info(item, self._active_name(user)), item["text"])

    def get_by_id(self, user: str, script_id: str) -> Script:
        active = self._active_name(user)
        for item in self._script_items(user):
            if item["id"] == script_id:
                return Script(self._info(item, active), item["text"])
        raise ScriptNotFound(f"No script with id {script_id!r}")

    def active(self, user: str) -> Script | None:
        item = self.items.get(keys.sieve_active_key(user))
        if not item:
            return None
        return Script(ScriptInfo(item["name"], item.get("id", ""), int(item.get("size", 0)), True,
                                 float(item.get("updated", 0.0))), item["text"])

    @contextlib.contextmanager
    def batch(self, users: Iterable[str]):
        """The delivery items of every user of a store batch in one BatchGetItem (up to 50 users a request)
        instead of one per record: ``for_delivery`` answers from them inside the block. They are as fresh as
        the batch (the read is eventually consistent anyway); outside the block nothing is kept. A failed read
        is no failure: each delivery then reads its own."""
        ks = [k for u in dict.fromkeys(users) for k in (keys.sieve_active_key(u), keys.sieve_managed_key(u))]
        try:
            got = self.items.batch_get(ks, consistent=False) if ks else {}
            self._batch = {(k["pk"], k["sk"]): got.get((k["pk"], k["sk"])) for k in ks}
        except PosternError:
            self._batch = None
        try:
            yield self
        finally:
            self._batch = None

    def for_delivery(self, user: str) -> tuple[Script | None, dict]:
        """(the active script or None, the managed rules as stored) in one BatchGetItem, or from the
        batch's read (``batch``)."""
        a, m = keys.sieve_active_key(user), keys.sieve_managed_key(user)
        ka, km = (a["pk"], a["sk"]), (m["pk"], m["sk"])
        if self._batch is not None and ka in self._batch and km in self._batch:
            got = {k: v for k in (ka, km) if (v := self._batch[k]) is not None}
        else:
            got = self.items.batch_get([a, m], consistent=False)
        item = got.get((a["pk"], a["sk"]))
        script = None
        if item:
            script = Script(ScriptInfo(item["name"], item.get("id", ""), int(item.get("size", 0)), True,
                                       float(item.get("updated", 0.0))), item["text"])
        managed = got.get((m["pk"], m["sk"]))
        return script, (managed or {}).get("rules", {})

    # --- writes -----------------------------------------------------------------------------------
    def put(self, user: str, name: str, source: bytes | str) -> ScriptInfo:
        """PUTSCRIPT: compile, check the limits, store (replacing a script of that name)."""
        validate_name(name)
        text = _text(source)
        self.check(text)  # SieveSyntaxError / ScriptQuota: nothing is stored
        size = len(text.encode("utf-8"))
        old = self.items.get(keys.sieve_script_key(user, name))
        if old is None and len(self._script_items(user)) >= self.max_scripts:
            raise ScriptQuota(f"At most {self.max_scripts} scripts", "QUOTA/MAXSCRIPTS")
        now = self.clock()
        item = {**keys.sieve_script_key(user, name), "kind": "sieve", "name": name,
                "id": old["id"] if old else "S" + secrets.token_hex(8), "text": text, "size": size, "updated": now}
        self.items.put(item)
        active = self.items.get(keys.sieve_active_key(user))
        if active and active.get("name") == name:
            self._write_active(user, item)
        return self._info(item, active.get("name") if active else None)

    def _write_active(self, user: str, item: dict) -> None:
        self.items.put({**keys.sieve_active_key(user), "kind": "sieve-active", "name": item["name"],
                        "id": item["id"], "text": item["text"], "size": item["size"], "updated": item["updated"]})

    def activate(self, user: str, name: str) -> None:
        """SETACTIVE: make ``name`` the active script; ``""`` deactivates (RFC 5804 §2.8)."""
        if name == "":
            self.deactivate(user)
            return
        item = self.items.get(keys.sieve_script_key(user, name))
        if item is None:
            raise ScriptNotFound(f"No script named {name!r}")
        self._write_active(user, item)

    def deactivate(self, user: str) -> None:
        self.items.delete(keys.sieve_active_key(user))

    def delete(self, user: str, name: str) -> None:
        """DELETESCRIPT: never the active script (RFC 5804 §2.10)."""
        if self._active_name(user) == name:
            raise ScriptActive()
        if not self.items.delete(keys.sieve_script_key(user, name)):
            raise ScriptNotFound(f"No script named {name!r}")

    def rename(self, user: str, old: str, new: str) -> None:
        """RENAMESCRIPT (RFC 5804 §2.11.1): the id, text and active mark move with the name."""
        validate_name(new)
        item = self.items.get(keys.sieve_script_key(user, old))
        if item is None:
            raise ScriptNotFound(f"No script named {old!r}")
        if old == new:
            return
        moved = {**item, **keys.sieve_script_key(user, new), "name": new, "updated": self.clock()}
        try:
            self.items.put(moved, if_absent=True)
        except AlreadyExists:
            raise ScriptExists(f"A script named {new!r} exists") from None
        if self._active_name(user) == old:
            self._write_active(user, moved)
        self.items.delete(keys.sieve_script_key(user, old))

    # --- the managed rules (postern.sieve.managed) ------------------------------------------------
    def managed_rules(self, user: str) -> dict:
        item = self.items.get(keys.sieve_managed_key(user))
        return (item or {}).get("rules", {})

    def put_managed_rules(self, user: str, rules: dict) -> None:
        self.items.put({**keys.sieve_managed_key(user), "kind": "sieve-managed", "rules": rules,
                        "updated": self.clock()})


def repository(settings=None, clients=None) -> ScriptRepository:
    """The repository on the directory table named by settings."""
    from ..aws import get_clients
    from ..config import get_settings
    from ..items import DynamoItems

    s = settings or get_settings()
    c = clients or get_clients()
    return ScriptRepository(DynamoItems(lambda: c.dynamodb, s.directory_table),
                            max_size=s.sieve_max_script_size, max_scripts=s.sieve_max_scripts)
