"""VacationResponse/get and /set (RFC 8621 §8): the vacation part of the user's managed Sieve script.

In:   :attr:`Account.rules` (``postern.sieve.managed.Managed``: the one
      structured API over the managed script the CLI and the webmail use too).
Out:  the singleton VacationResponse object; a /set rewrites the managed
      script through ``Managed.set_vacation`` / ``disable_vacation`` (the Sieve
      delivery path then answers as the CLI's vacation does: once per sender
      per period, never to lists, robots or the null sender).
Fails: ``accountNotSupportedByMethod`` when the deployment gives no rules;
      SetErrors ``singleton`` (create, destroy), ``notFound`` (an id other
      than ``singleton``), ``invalidProperties`` (what ``check_vacation``
      refuses: no text, a multi-line subject, toDate before fromDate).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json

from ..sieve.managed import ManagedRuleError, VacationSettings
from . import args as A
from .errors import MethodError, set_error

ID = "singleton"
FIELDS = ("isEnabled", "fromDate", "toDate", "subject", "textBody", "htmlBody")


def _utc(t: float | None) -> str | None:
    return None if t is None else _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(value, prop: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(prop)
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise _Invalid(prop) from None


class _Invalid(Exception):
    def __init__(self, prop: str, description: str = "invalid value"):
        super().__init__(description)
        self.prop = prop


def _managed(call):
    if call.account.rules is None:
        raise MethodError("accountNotSupportedByMethod", "vacation replies are not available here")
    return call.account.rules


def _object(v: VacationSettings | None) -> dict:
    if v is None:
        return {"id": ID, "isEnabled": False, "fromDate": None, "toDate": None, "subject": None, "textBody": None,
                "htmlBody": None}
    return {"id": ID, "isEnabled": bool(v.enabled), "fromDate": _utc(v.from_date), "toDate": _utc(v.to_date),
            "subject": v.subject, "textBody": v.text or None, "htmlBody": v.html}


def _state(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def get(call, args: dict) -> dict:
    A.known(args, {"accountId", "ids", "properties"})
    ids = A.ids(args)
    obj = _object(_managed(call).rules(call.account.user).vacation)
    wanted = [ID] if ids is None else ids
    return {"accountId": call.account.id, "state": _state(obj), "list": [obj for i in wanted if i == ID],
            "notFound": [i for i in wanted if i != ID]}


def set_(call, args: dict) -> dict:
    A.known(args, {"accountId", "ifInState", "create", "update", "destroy"})
    managed = _managed(call)
    user = call.account.user
    before = _object(managed.rules(user).vacation)
    if args.get("ifInState") is not None and args["ifInState"] != _state(before):
        raise MethodError("stateMismatch")
    create, update = A.obj(args, "create") or {}, A.obj(args, "update") or {}
    destroy = A.ids(args, "destroy") or []
    out = {"accountId": call.account.id, "oldState": _state(before), "created": {}, "updated": {}, "destroyed": [],
           "notCreated": {k: set_error("singleton") for k in create}, "notUpdated": {},
           "notDestroyed": {k: set_error("singleton") for k in destroy}}
    for vid, patch in update.items():
        if vid != ID:
            out["notUpdated"][vid] = set_error("notFound")
            continue
        try:
            if not isinstance(patch, dict) or any(k not in FIELDS for k in patch):
                raise _Invalid(next((k for k in (patch if isinstance(patch, dict) else ()) if k not in FIELDS), ""),
                               "not a VacationResponse property")
            want = {**before, **patch}
            for k in ("subject", "textBody", "htmlBody"):
                if want[k] is not None and not isinstance(want[k], str):
                    raise _Invalid(k)
            if not isinstance(want["isEnabled"], bool):
                raise _Invalid("isEnabled")
            settings = VacationSettings(enabled=True, subject=want["subject"], text=want["textBody"] or "",
                                        html=want["htmlBody"], from_date=_epoch(want["fromDate"], "fromDate"),
                                        to_date=_epoch(want["toDate"], "toDate"))
            if want["isEnabled"]:
                managed.set_vacation(user, settings)
            elif before["isEnabled"] or patch:
                if want["textBody"] or want["htmlBody"]:
                    managed.set_vacation(user, settings)  # keep the text for next time
                managed.disable_vacation(user)
            out["updated"][ID] = None
        except _Invalid as exc:
            out["notUpdated"][vid] = set_error("invalidProperties", str(exc), properties=[exc.prop])
        except ManagedRuleError as exc:
            out["notUpdated"][vid] = set_error("invalidProperties", exc.text, properties=["textBody"])
    out["newState"] = _state(_object(managed.rules(user).vacation))
    return out
