"""SieveScript/get, /changes, /query, /set, /validate (RFC 9661): the user's own Sieve scripts.

In:   :attr:`Account.scripts`, the :class:`~postern.sieve.repository.ScriptRepository`
      ManageSieve, the CLI and delivery use (the same items, the same limits -
      ``POSTERN_SIEVE_MAX_SCRIPT_SIZE``, ``POSTERN_SIEVE_MAX_SCRIPTS`` - and the same
      parser: a script that does not compile is never stored); script content as a
      blobId (an upload, or another script's content) read through ``blobs.read``.
Out:  the method responses; :data:`SESSION_CAPABILITY` and :func:`capability` (the
      session and account capability objects of RFC 9661 §1.2.1); :func:`read_blob`
      (a script's content by its blobId, for the download route and ``blobs``).
Fails: ``accountNotSupportedByMethod`` when the deployment gives no repository;
      SetErrors (RFC 9661 §2.4): ``invalidSieve`` with the parser's
      ``line:column: message`` as its description, ``tooLarge``
      (``QUOTA/MAXSIZE``), ``overQuota`` (``QUOTA/MAXSCRIPTS``),
      ``alreadyExists`` (with ``existingId``), ``invalidProperties`` (a name
      ManageSieve refuses, a write to the server-set ``isActive``),
      ``blobNotFound``, ``notFound``, ``sieveIsActive`` (destroying the active
      script). The repository's StoreUnavailable is ``serverUnavailable`` (api).

The Postern-managed script (vacation, simple filters, allow/block lists) is
not a user script: it lives under its own key and is never listed here.

The repository keeps no change log of scripts: the state is a digest of what
the account's scripts are (ids, names, sizes, update times, the active one),
so ``/changes`` from the current state answers "nothing changed" and from any
other state ``cannotCalculateChanges`` (RFC 8620 §5.2: the client then
refetches, at most ``maxNumberScripts`` objects).

A script's blobId is ``Z`` and the SHA-256 of its text: blobs are immutable
(RFC 8620 §6), so new content is a new blobId.
"""

from __future__ import annotations

import hashlib
import re

from ..sieve import EXTENSIONS
from ..sieve.errors import (ScriptActive, ScriptExists, ScriptNameInvalid, ScriptNotFound, ScriptQuota,
                            SieveSyntaxError)
from ..sieve.repository import MAX_NAME, Script, ScriptInfo
from . import args as A
from .errors import MethodError, invalid_arguments, set_error

IMPLEMENTATION = "Postern"  # the ManageSieve IMPLEMENTATION capability says the same
PROPERTIES = ("id", "name", "blobId", "isActive")
_BLOB = re.compile(r"Z([0-9a-f]{64})")


SESSION_CAPABILITY = {"implementation": IMPLEMENTATION}  # RFC 9661 §1.2.1: the server's, in the session


def capability(account) -> dict:
    """RFC 9661 §1.2.1: what this account's scripts may be (the repository's limits, one rule)."""
    repo = account.scripts
    return {"maxSizeScriptName": MAX_NAME * 4,  # octets: 128 characters of UTF-8 (RFC 9661 asks for at least 512)
            "maxSizeScript": repo.max_size, "maxNumberScripts": repo.max_scripts,
            "maxNumberRedirects": account.sieve_redirects, "sieveExtensions": list(EXTENSIONS),
            "notificationMethods": None, "externalLists": None}


def blob_id(text: str) -> str:
    return "Z" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_blob(account, blob: str) -> bytes | None:
    """The content of one of the account's scripts by its blobId, or None."""
    m = _BLOB.fullmatch(blob or "") if isinstance(blob, str) else None
    if m is None or account.scripts is None:
        return None
    for info in account.scripts.list(account.user):
        script = account.scripts.get(account.user, info.name)
        if script.digest == m.group(1):
            return script.text.encode("utf-8")
    return None


def _repo(call):
    if call.account.scripts is None:
        raise MethodError("accountNotSupportedByMethod", "Sieve scripts are not available here")
    return call.account.scripts


def _state(infos: list[ScriptInfo]) -> str:
    said = sorted((i.id, i.name, i.size, i.updated, i.active) for i in infos)
    return hashlib.sha256(repr(said).encode()).hexdigest()[:16]


def _object(script: Script) -> dict:
    return {"id": script.info.id, "name": script.info.name, "blobId": blob_id(script.text),
            "isActive": script.info.active}


def _props(args: dict) -> list[str]:
    props = A.strings(args, "properties")
    if props is None:
        return list(PROPERTIES)
    bad = [p for p in props if p not in PROPERTIES]
    if bad:
        raise invalid_arguments(f"unknown property {bad[0][:60]!r}")
    return list(dict.fromkeys(["id", *props]))


def get(call, args: dict) -> dict:
    A.known(args, {"accountId", "ids", "properties"})
    repo, user = _repo(call), call.account.user
    ids = A.ids(args)
    props = _props(args)
    infos = repo.list(user)
    by_id = {i.id: i for i in infos}
    wanted = [i.id for i in infos] if ids is None else ids
    found, missing = [], []
    for sid in wanted:
        info = by_id.get(call.resolve_id(sid) or "")
        if info is None:
            missing.append(sid)
            continue
        obj = _object(repo.get(user, info.name)) if "blobId" in props else \
            {"id": info.id, "name": info.name, "isActive": info.active}
        found.append({p: obj[p] for p in props})
    return {"accountId": call.account.id, "state": _state(infos), "list": found, "notFound": missing}


def changes(call, args: dict) -> dict:
    A.known(args, {"accountId", "sinceState", "maxChanges"})
    A.integer(args, "maxChanges", None, minimum=1)
    since = args.get("sinceState")
    state = _state(_repo(call).list(call.account.user))
    if since != state:
        raise MethodError("cannotCalculateChanges", "scripts keep no change log: get them again")
    return {"accountId": call.account.id, "oldState": state, "newState": state, "hasMoreChanges": False,
            "created": [], "updated": [], "destroyed": []}


def _matches(info: ScriptInfo, f: dict) -> bool:
    if "operator" in f:
        conds = f.get("conditions")
        if not isinstance(conds, list) or f["operator"] not in ("AND", "OR", "NOT") or \
                not all(isinstance(c, dict) for c in conds):
            raise MethodError("unsupportedFilter", "bad FilterOperator")
        results = [_matches(info, c) for c in conds]
        return {"AND": all, "OR": any, "NOT": lambda r: not any(r)}[f["operator"]](results)
    for k, v in f.items():
        if k == "name" and isinstance(v, str):  # RFC 9661 §2.3: the name contains the string
            if v.casefold() not in info.name.casefold():
                return False
        elif k == "isActive" and isinstance(v, bool):
            if info.active is not v:
                return False
        else:
            raise MethodError("unsupportedFilter", f"cannot filter on {str(k)[:60]!r}")
    return True


def query(call, args: dict) -> dict:
    from .mailbox import window

    A.known(args, {"accountId", "filter", "sort", "position", "anchor", "anchorOffset", "limit", "calculateTotal"})
    infos = _repo(call).list(call.account.user)
    flt = A.obj(args, "filter") or {}
    found = [i for i in infos if _matches(i, flt)]
    sort = args.get("sort") or [{"property": "name"}]
    if not isinstance(sort, list):
        raise invalid_arguments("sort must be a list")
    for c in reversed(sort):
        prop = c.get("property") if isinstance(c, dict) else None
        if prop not in ("name", "isActive"):
            raise MethodError("unsupportedSort", f"cannot sort by {str(prop)[:60]!r}")
        key = (lambda i: i.name) if prop == "name" else (lambda i: i.active)
        found.sort(key=key, reverse=c.get("isAscending", True) is False)
    return window(call, args, [i.id for i in found], _state(infos))


def query_changes(call, args: dict) -> dict:
    raise MethodError("cannotCalculateChanges", "get the query again")


# --- /set ---------------------------------------------------------------------------------------
class _Refused(Exception):
    def __init__(self, error: dict):
        super().__init__(error["type"])
        self.error = error


def _refusal(exc: Exception, prop: str = "blobId") -> dict:
    """A repository refusal as the SetError RFC 9661 §2.4 names."""
    if isinstance(exc, SieveSyntaxError):
        return set_error("invalidSieve", str(exc))  # "line:column: message", as PUTSCRIPT says it
    if isinstance(exc, ScriptQuota):
        return set_error("tooLarge" if exc.managesieve_code == "QUOTA/MAXSIZE" else "overQuota", exc.text)
    if isinstance(exc, ScriptNameInvalid):
        return set_error("invalidProperties", exc.text, properties=["name"])
    if isinstance(exc, ScriptActive):
        return set_error("sieveIsActive", exc.text)
    if isinstance(exc, ScriptNotFound):
        return set_error("notFound", exc.text)
    return set_error("invalidProperties", str(exc), properties=[prop])


def _content(call, blob) -> bytes:
    from . import blobs

    if not isinstance(blob, str):
        raise _Refused(set_error("invalidProperties", "blobId is a string", properties=["blobId"]))
    found = blobs.read(call, blob)
    if found is None:
        raise _Refused(set_error("blobNotFound", f"no blob {blob[:80]!r}", notFound=[blob]))
    data = found[0]
    limit = call.account.scripts.max_size
    if len(data) > limit:  # before decoding or compiling a byte of it
        raise _Refused(set_error("tooLarge", f"Script too large ({len(data)} bytes, at most {limit})"))
    return data


def _check_keys(obj, creating: bool) -> None:
    if not isinstance(obj, dict):
        raise _Refused(set_error("invalidProperties", "not an object"))
    bad = [k for k in obj if k not in ("name", "blobId", "isActive", "id")]
    if bad or (creating and obj.get("id") is not None):
        raise _Refused(set_error("invalidProperties", "unknown or server-set property",
                                 properties=bad or ["id"]))
    if "name" in obj and obj["name"] is not None and not isinstance(obj["name"], str):
        raise _Refused(set_error("invalidProperties", "name is a string", properties=["name"]))


def _free_name(taken: set[str]) -> str:
    n = 1
    while f"script-{n}" in taken:
        n += 1
    return f"script-{n}"


def _create(call, repo, user: str, obj) -> Script:
    _check_keys(obj, creating=True)
    if obj.get("isActive") not in (None, False):
        raise _Refused(set_error("invalidProperties", "isActive is set by onSuccessActivateScript",
                                 properties=["isActive"]))
    infos = {i.name: i for i in repo.list(user)}
    name = obj.get("name") or _free_name(set(infos))  # RFC 9661 §2.1: a null name is the server's choice
    if name in infos:  # PUTSCRIPT replaces; a JMAP create never does
        raise _Refused(set_error("alreadyExists", f"a script named {name[:80]!r} exists", existingId=infos[name].id))
    if "blobId" not in obj:
        raise _Refused(set_error("invalidProperties", "blobId is required", properties=["blobId"]))
    data = _content(call, obj["blobId"])
    try:
        repo.put(user, name, data)
        return repo.get(user, name)
    except (SieveSyntaxError, ScriptQuota, ScriptNameInvalid) as exc:
        raise _Refused(_refusal(exc)) from None


def _update(call, repo, user: str, sid: str, patch) -> Script:
    _check_keys(patch, creating=False)
    by_id = {i.id: i for i in repo.list(user)}
    info = by_id.get(sid)
    if info is None:
        raise _Refused(set_error("notFound"))
    if "id" in patch and patch["id"] != sid:
        raise _Refused(set_error("invalidProperties", "id is immutable", properties=["id"]))
    if "isActive" in patch and patch["isActive"] is not info.active:
        raise _Refused(set_error("invalidProperties", "isActive is set by onSuccessActivateScript",
                                 properties=["isActive"]))
    data = _content(call, patch["blobId"]) if "blobId" in patch else None
    name = info.name
    try:
        new = patch.get("name")
        if new is not None and new != info.name:
            if new in {i.name for i in by_id.values()}:
                other = next(i for i in by_id.values() if i.name == new)
                raise _Refused(set_error("alreadyExists", f"a script named {new[:80]!r} exists", existingId=other.id))
            if data is not None:
                repo.check(data)  # refuse bad content before renaming anything
            repo.rename(user, info.name, new)
            name = new
        if data is not None:
            repo.put(user, name, data)
        return repo.get(user, name)
    except (SieveSyntaxError, ScriptQuota, ScriptNameInvalid, ScriptExists, ScriptNotFound) as exc:
        if isinstance(exc, ScriptExists):
            raise _Refused(set_error("alreadyExists", exc.text)) from None
        raise _Refused(_refusal(exc)) from None


def set_(call, args: dict) -> dict:
    A.known(args, {"accountId", "ifInState", "create", "update", "destroy", "onSuccessActivateScript",
                   "onSuccessDeactivateScript"})
    repo, user = _repo(call), call.account.user
    create, update = A.obj(args, "create") or {}, A.obj(args, "update") or {}
    destroy = A.ids(args, "destroy") or []
    A.set_limit(create, update, destroy)
    activate = args.get("onSuccessActivateScript")
    if activate is not None and not isinstance(activate, str):
        raise invalid_arguments("onSuccessActivateScript is an id")
    deactivate = A.boolean(args, "onSuccessDeactivateScript")
    before = repo.list(user)
    old_state = _state(before)
    if args.get("ifInState") is not None and args["ifInState"] != old_state:
        raise MethodError("stateMismatch")
    out = {"accountId": call.account.id, "oldState": old_state, "created": {}, "notCreated": {}, "updated": {},
           "notUpdated": {}, "destroyed": [], "notDestroyed": {}}
    for cid, obj in create.items():
        try:
            script = _create(call, repo, user, obj)
        except _Refused as exc:
            out["notCreated"][cid] = exc.error
            continue
        call.created_ids[cid] = script.info.id
        out["created"][cid] = {"id": script.info.id, "name": script.info.name, "blobId": blob_id(script.text),
                               "isActive": False}
    for sid, patch in update.items():
        try:
            script = _update(call, repo, user, call.resolve_id(sid) or sid, patch)
        except _Refused as exc:
            out["notUpdated"][sid] = exc.error
            continue
        changed = {k: v for k, v in _object(script).items() if k in ("name", "blobId") and k in patch}
        out["updated"][script.info.id] = changed or None
    for sid in destroy:
        sid = call.resolve_id(sid) or sid
        info = next((i for i in repo.list(user) if i.id == sid), None)
        try:
            if info is None:
                raise ScriptNotFound()
            repo.delete(user, info.name)  # never the active one (RFC 9661 §2.4: sieveIsActive)
            out["destroyed"].append(sid)
        except (ScriptActive, ScriptNotFound) as exc:
            out["notDestroyed"][sid] = _refusal(exc)
    if not (out["notCreated"] or out["notUpdated"] or out["notDestroyed"]):
        _switch(call, repo, user, out, activate, deactivate)
    out["newState"] = _state(repo.list(user))
    return out


def _switch(call, repo, user: str, out: dict, activate: str | None, deactivate: bool) -> None:
    """onSuccessDeactivateScript / onSuccessActivateScript (RFC 9661 §2.4): run after every change
    succeeded; each script whose isActive changed is reported in created or updated."""
    if activate is None and not deactivate:
        return
    current = repo.active(user)
    target = None
    if activate is not None:
        target_id = call.resolve_id(activate)
        target = next((i for i in repo.list(user) if i.id == target_id), None)  # unknown: ignored (§2.4)
    if target is None and not deactivate:
        return
    if current is not None and (target is None or current.info.id != target.id):
        repo.deactivate(user)
        _report(out, current.info.id, False)
    if target is not None and (current is None or current.info.id != target.id):
        repo.activate(user, target.name)
        _report(out, target.id, True)


def _report(out: dict, sid: str, active: bool) -> None:
    for made in out["created"].values():
        if made["id"] == sid:
            made["isActive"] = active
            return
    out["updated"][sid] = {**(out["updated"].get(sid) or {}), "isActive": active}


def validate(call, args: dict) -> dict:
    """SieveScript/validate (RFC 9661 §2.6): compile the blob, store nothing."""
    A.known(args, {"accountId", "blobId"})
    repo = _repo(call)
    error = None
    try:
        repo.check(_content(call, args.get("blobId")))
    except _Refused as exc:
        error = exc.error
    except (SieveSyntaxError, ScriptQuota) as exc:
        error = _refusal(exc)
    return {"accountId": call.account.id, "error": error}
