"""Thread ids at append time: which earlier message does this one reply to?

In:   the raw header section of a message being appended (bytes).
Out:  :func:`message_ids` -> (its own Message-ID, the ids it refers to: In-Reply-To
      first, then References last to first); :func:`id_hash` -> the short key the
      store indexes a Message-ID under (``keys.thread_key``).
Fails: never: an unreadable or absent field gives no ids (the message starts a
      new thread).

The store looks the referenced ids up in the account's thread index and takes
the thread of the first one found; otherwise the thread is named after its root
(:func:`thread_root`: the first id of References, else In-Reply-To, else the
message's own id), so a root message needs no index item: a reply that finds
nothing indexed names the same root and joins it, in whichever order they
arrive. A reply records its own Message-ID, since its own replies name the
root only through References (JMAP RFC 8621 §3: threads are the server's
choice; this is the References chain, without subject merging). Work is bounded for hostile headers: at most 64 KiB
of header is looked at, at most 8 KiB of each field, and References keeps its
first id and its last 20.
"""

from __future__ import annotations

import hashlib
import re
from email import policy
from email.parser import BytesHeaderParser

MAX_HEADER = 64 * 1024
MAX_FIELD = 8 * 1024
MAX_REFS = 20
_ID = re.compile(r"<([^<>\s]{1,250})>")


def _ids(value: str) -> list[str]:
    return _ID.findall(value[:MAX_FIELD])


def message_ids(header: bytes) -> tuple[str | None, list[str]]:
    try:
        msg = BytesHeaderParser(policy=policy.default).parsebytes(header[:MAX_HEADER])
        fields = [(n.lower(), str(v)) for n, v in msg.raw_items()]
    except Exception:  # noqa: BLE001 - a header we cannot read starts a thread of its own
        return None, []
    own = next((i for n, v in fields if n == "message-id" for i in _ids(v)[:1]), None)
    reply = next((i for n, v in fields if n == "in-reply-to" for i in _ids(v)[:1]), None)
    refs: list[str] = []
    for n, v in fields:
        if n == "references":
            ids = _ids(v)
            refs = ids[:1] + ids[1:][-MAX_REFS:]
            break
    ordered = ([reply] if reply else []) + list(reversed(refs))
    seen: set[str] = set()
    out = [i for i in ordered if i != own and not (i in seen or seen.add(i))]
    return own, out


def id_hash(message_id: str) -> str:
    return hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def thread_root(own: str | None, refs: list[str]) -> str | None:
    """The id a thread is named after when no message of it is indexed: RFC 5322 §3.6.4 References
    starts with the thread's first message (``message_ids`` puts it last), else the parent, else this one."""
    return refs[-1] if refs else own
