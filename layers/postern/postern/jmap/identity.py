"""Identity/get (RFC 8621 §6): one Identity per address the user may send as.

The addresses are the submission sender rule's (``Account.senders``, from
``Directory.addresses_of``: the user's own address and the aliases naming
it), so what JMAP offers is exactly what EmailSubmission accepts."""

from __future__ import annotations

import hashlib

from . import args as A


def identity_id(address: str) -> str:
    return "i" + hashlib.sha256(address.lower().encode("utf-8")).hexdigest()[:16]


def identities(account) -> dict[str, dict]:
    addrs = sorted({account.user, *account.senders})
    return {identity_id(a): {"id": identity_id(a), "name": account.name or "", "email": a, "replyTo": None,
                             "bcc": None, "textSignature": "", "htmlSignature": "", "mayDelete": False}
            for a in addrs}


def get(call, args: dict) -> dict:
    A.known(args, {"accountId", "ids", "properties"})
    ids = A.ids(args)
    every = identities(call.account)
    wanted = list(every) if ids is None else ids
    return {"accountId": call.account.id, "state": "0",
            "list": [every[i] for i in wanted if i in every], "notFound": [i for i in wanted if i not in every]}
