"""A new Email from bytes, in one or more mailboxes: the one way JMAP creates messages.

In:   the call (account: store, user, quota), the account view, the logical message bytes, the
      destination mailbox ids (already checked against the view), IMAP flags and INTERNALDATE.
Out:  the created object's server-set properties (RFC 8621 §4.6/§4.7/§4.8): ``id``, ``blobId``,
      ``threadId``, ``size``. The message is appended through the one ingest path
      (``postern.mailboxes.append``: the first-delivery rule) into the first mailbox, then COPYed
      into the others (``MailStore.copy``, as IMAP COPY does: one email id, one blob).
Fails: the store's QuotaExceeded, KeywordLimit, MailboxNotFound (the callers turn them into
      SetErrors).

Email/set create (``compose``), Email/import (``importer``) and Email/copy (``copy``) all call
:func:`store_new`.
"""

from __future__ import annotations

from .. import mailboxes as rules


def store_new(call, view, raw: bytes, mailbox_ids: list[str], flags, internaldate: float | None) -> dict:
    store, user, quota = call.account.store, call.account.user, call.account.quota
    res = rules.append(store, user, view.mailboxes[mailbox_ids[0]].name, raw, flags=flags,
                       internaldate=internaldate, quota=quota)
    if len(mailbox_ids) > 1:
        mb = store.get_mailbox_by_id(user, res.mailbox_id)
        metas = store.get_messages(mb, [res.uid])
        for other in mailbox_ids[1:]:
            store.copy(mb, metas, view.mailboxes[other].name, quota=quota)
    call.changed()
    return {"id": res.email_id, "blobId": "B" + res.email_id[1:], "threadId": res.thread_id, "size": len(raw)}
