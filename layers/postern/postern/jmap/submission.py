"""EmailSubmission/set (RFC 8621 §7.5): send a stored Email through the outbound path.

In:   create objects ``{identityId, emailId, envelope?}``; the Email's bytes
      from the store; :attr:`Account.senders` (``Directory.addresses_of``) and
      :meth:`Directory.owns`, the sender rule SMTP submission uses;
      :attr:`Account.submit`, the outbound path the HTTPS function wires in
      (spool to S3, envelope to the inbound queue with ``auth_user``: the
      router then relays as for port 587).
Out:  the /set response; ``onSuccessUpdateEmail`` / ``onSuccessDestroyEmail``
      run as an implicit Email/set whose response follows (RFC 8621 §7.5).
Fails: SetErrors: ``forbiddenFrom`` (a From: address the user does not own),
      ``forbiddenMailFrom`` (envelope sender not owned), ``noRecipients``,
      ``invalidEmail`` (a header section submission refuses:
      ``postern.mail.author.submission_problem``, the SMTP port's rule),
      ``tooLarge``, ``notFound`` (no such Email or identity), ``forbidden``
      when this deployment has no outbound path; a StoreUnavailable from the
      spool is ``serverUnavailable`` for the whole call (nothing was sent).

The Bcc: field is taken out of the bytes sent (RFC 8621 §7: the server MUST
remove it), located by the one header splitter and cut as bytes; nothing
else is rewritten. The message is sent once per create: a submission the
outbound path accepted is ``final`` (no delayed send, no undo).
"""

from __future__ import annotations

import time

from ..directory import Directory
from ..mail.author import author, submission_problem
from ..mail.header import Header
from . import args as A
from . import headers as H
from .errors import MethodError, set_error
from .identity import identities

MAX_RCPTS = 100


def _without_bcc(raw: bytes, h: Header) -> bytes:
    spans = h.spans(b"bcc")
    out, pos = [], 0
    for start, _, end in spans:
        out.append(raw[pos:start])
        pos = end
    out.append(raw[pos:])
    return b"".join(out)


def _envelope(obj, h: Header) -> tuple[str, list[str]]:
    env = obj.get("envelope")
    if env is not None:
        if not isinstance(env, dict) or not isinstance(env.get("mailFrom"), dict) or \
                not isinstance(env.get("rcptTo"), list):
            raise _Err("invalidProperties", "envelope", "an Envelope has mailFrom and rcptTo")
        mail_from = env["mailFrom"].get("email")
        rcpts = [r.get("email") for r in env["rcptTo"] if isinstance(r, dict)]
        if not isinstance(mail_from, str) or not all(isinstance(r, str) for r in rcpts):
            raise _Err("invalidProperties", "envelope", "addresses are strings")
        return mail_from, rcpts
    # RFC 8621 §7: the Sender (or else From) address, and every To, Cc and Bcc address once
    sender = H.addresses(h.get(b"sender") or b"") or H.addresses(h.get(b"from") or b"")
    rcpts: list[str] = []
    for name in (b"to", b"cc", b"bcc"):
        for v in h.get_all(name):
            rcpts += [a["email"] for a in H.addresses(v) if a["email"] not in rcpts]
    return (sender[0]["email"] if sender else ""), rcpts


class _Err(Exception):
    def __init__(self, type_: str, prop: str | None = None, description: str | None = None):
        super().__init__(description or type_)
        self.type, self.prop, self.description = type_, prop, description

    def set_error(self) -> dict:
        extra = {"properties": [self.prop]} if self.prop else {}
        return set_error(self.type, self.description, **extra)


def _submit(call, view, obj) -> dict:
    acct = call.account
    if not isinstance(obj, dict):
        raise _Err("invalidProperties", None, "not an object")
    ident = identities(acct).get(obj.get("identityId"))
    if ident is None:
        raise _Err("invalidProperties", "identityId", "no such identity")
    eid = call.resolve_id(obj.get("emailId")) or ""
    entry = view.entries([eid]).get(eid)
    if entry is None:
        raise _Err("invalidProperties", "emailId", "no such Email")
    meta = view.full(entry)
    if meta.size > acct.max_size:  # the SMTP size limit (POSTERN_MAX_MESSAGE_SIZE)
        raise _Err("tooLarge", None, f"at most {acct.max_size} bytes")
    raw = acct.store.read(meta)
    h = Header(raw)
    problem = submission_problem(h)
    if problem is not None:
        raise _Err("invalidEmail", None, problem)
    owned = set(acct.senders) | {acct.user}
    for m in author(h).mailboxes:
        if not Directory.owns(owned, m.addr_spec):
            raise _Err("forbiddenFrom", None, f"{m.addr_spec} is not one of your addresses")
    mail_from, rcpts = _envelope(obj, h)
    if not Directory.owns(owned, mail_from):
        raise _Err("forbiddenMailFrom", None, f"{mail_from[:200]} is not one of your addresses")
    if not rcpts:
        raise _Err("noRecipients")
    if len(rcpts) > MAX_RCPTS:
        raise _Err("tooManyRecipients", None, f"at most {MAX_RCPTS}")
    if acct.submit is None:
        raise _Err("forbidden", None, "this server has no outbound path for JMAP")
    queue_id = acct.submit(acct.user, mail_from, rcpts, _without_bcc(raw, h))
    return {"id": "S" + queue_id, "threadId": entry.thread_id, "undoStatus": "final",
            "sendAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "emailId": entry.id,
            "identityId": ident["id"], "envelope": {"mailFrom": {"email": mail_from, "parameters": None},
                                                    "rcptTo": [{"email": r, "parameters": None} for r in rcpts]},
            "deliveryStatus": None, "dsnBlobIds": [], "mdnBlobIds": []}


def set_(call, args: dict):
    A.known(args, {"accountId", "ifInState", "create", "update", "destroy", "onSuccessUpdateEmail",
                   "onSuccessDestroyEmail"})
    create, update = A.obj(args, "create") or {}, A.obj(args, "update") or {}
    destroy = A.ids(args, "destroy") or []
    A.set_limit(create, update, destroy)
    on_update = A.obj(args, "onSuccessUpdateEmail") or {}
    on_destroy = A.ids(args, "onSuccessDestroyEmail") or []
    if args.get("ifInState") is not None:
        raise MethodError("stateMismatch")  # submissions are not kept: no state can match
    view = call.view()
    out = {"accountId": call.account.id, "oldState": "0", "newState": "0", "created": {}, "notCreated": {},
           "updated": {}, "notUpdated": {}, "destroyed": [], "notDestroyed": {}}
    done: dict[str, dict] = {}
    for cid, obj in create.items():
        try:
            made = _submit(call, view, obj)
        except _Err as exc:
            out["notCreated"][cid] = exc.set_error()
            continue
        done[cid] = made
        call.created_ids[cid] = made["id"]
        out["created"][cid] = {k: made[k] for k in ("id", "undoStatus", "sendAt", "threadId")}
    for sid in update:
        out["notUpdated"][sid] = set_error("notFound")  # sent at once: nothing left to update or cancel
    for sid in destroy:
        out["notDestroyed"][sid] = set_error("notFound")
    responses = [("EmailSubmission/set", out)]
    # RFC 8621 §7.5: "#creationId" keys name submissions created above; the Email/set runs as if called next
    email_update, email_destroy = {}, []
    for key, patch in on_update.items():
        sub = done.get(key[1:]) if key.startswith("#") else next((d for d in done.values() if d["id"] == key), None)
        if sub is not None:
            email_update[sub["emailId"]] = patch
    for key in on_destroy:
        sub = done.get(key[1:]) if key.startswith("#") else next((d for d in done.values() if d["id"] == key), None)
        if sub is not None:
            email_destroy.append(sub["emailId"])
    if email_update or email_destroy:
        from . import email

        responses.append(("Email/set", email.set_(call, {"accountId": call.account.id, "update": email_update,
                                                         "destroy": email_destroy})))
    return responses
