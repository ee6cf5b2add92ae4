"""The JMAP Session resource (RFC 8620 §2): capabilities, limits, the account, the URLs.

In:   the :class:`~.account.Account` and the public base URL of the HTTPS front
      (``https://webmail.example.com``, no trailing slash).
Out:  :func:`build` -> the session object to serve at ``/.well-known/jmap``;
      :data:`CORE_LIMITS` (the limits ``api`` enforces: one table for both).
Fails: never.

The ``state`` of the session (also every response's ``sessionState``) is
derived from what the object says about the account, so it changes exactly
when that does.
"""

from __future__ import annotations

import hashlib
import json

from .account import Account

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
QUOTA = "urn:ietf:params:jmap:quota"  # RFC 9425
VACATION = "urn:ietf:params:jmap:vacationresponse"  # RFC 8621 §8
SIEVE = "urn:ietf:params:jmap:sieve"  # RFC 9661
POSTERN = "https://postern.dev/jmap"  # postern.jmap.postern: password change, simple filters, reports (README)

# RFC 8620 §2: the limits the server enforces. maxSizeUpload: the HTTP API -> Lambda path carries
# at most 6 MB, base64 encoded (issue 14); larger attachments go through presigned S3 uploads.
CORE_LIMITS = {
    "maxSizeUpload": 4_000_000,
    "maxConcurrentUpload": 4,
    "maxSizeRequest": 1_000_000,
    "maxConcurrentRequests": 4,
    "maxCallsInRequest": 16,
    "maxObjectsInGet": 500,
    "maxObjectsInSet": 500,
    "collationAlgorithms": ["i;ascii-casemap", "i;ascii-numeric", "i;unicode-casemap"],
}

TEXT_ALLOWANCE = 64 * 1024  # bytes of a message left for its header section and text parts


def attachments_limit(max_size: int) -> int:
    """The unencoded attachment total (RFC 8621 maxSizeAttachmentsPerEmail) a message of at most
    ``max_size`` bytes can carry: base64 writes 57 bytes as one 78-byte line (RFC 2045 §6.8)."""
    return max(0, (max_size - TEXT_ALLOWANCE) * 57 // 78)


def mail_limits(account: Account) -> dict:
    """The mail capability's account value: MAIL_LIMITS with the account's message size limit."""
    return {**MAIL_LIMITS, "maxSizeAttachmentsPerEmail": attachments_limit(account.max_size)}


MAIL_LIMITS = {
    "maxMailboxesPerEmail": None,
    "maxMailboxDepth": 32,  # postern.mailboxes.MAX_DEPTH
    "maxSizeMailboxName": 490,
    "maxSizeAttachmentsPerEmail": None,  # Account.max_size (POSTERN_MAX_MESSAGE_SIZE): mail_limits()
    "emailQuerySortOptions": ["receivedAt", "size", "from", "to", "subject", "sentAt", "hasKeyword",
                              "allInThreadHaveKeyword", "someInThreadHaveKeyword"],
    "mayCreateTopLevelMailbox": True,
}

SUBMISSION_LIMITS = {"maxDelayedSend": 0, "submissionExtensions": {}}


UPLOAD = "https://postern.dev/jmap/upload"  # presigned S3 POSTs past maxSizeUpload (postern.jmap.upload)


def capabilities() -> dict:
    """Server capabilities: the ``using`` values a request may name (RFC 8620 §3.3)."""
    from .sievescript import SESSION_CAPABILITY

    return {CORE: CORE_LIMITS, MAIL: {}, SUBMISSION: {}, QUOTA: {}, VACATION: {}, UPLOAD: {},
            SIEVE: SESSION_CAPABILITY, POSTERN: {}}


def build(account: Account, base_url: str, push_url: str = "") -> dict:
    """``push_url``: the RFC 8887 WebSocket (POSTERN_PUSH_URL), advertised when set."""
    base = base_url.rstrip("/")
    acct = {
        "name": account.name or account.user,
        "isPersonal": True,
        "isReadOnly": False,
        "accountCapabilities": {MAIL: mail_limits(account), SUBMISSION: SUBMISSION_LIMITS, QUOTA: {}},
    }
    if account.rules is not None:
        acct["accountCapabilities"][VACATION] = {}
    if account.presign_upload is not None:
        from .upload import account_capability as upload_capability

        acct["accountCapabilities"][UPLOAD] = upload_capability(account.presign_upload)
    if account.scripts is not None:
        from .sievescript import capability

        acct["accountCapabilities"][SIEVE] = capability(account)  # RFC 9661 §1.2.1
    from .postern import account_capability

    acct["accountCapabilities"][POSTERN] = account_capability(account)
    out = {
        "capabilities": capabilities(),
        "accounts": {account.id: acct},
        # core too: clients (jmapc, jmaplib) take the core capability's primary account as the default one
        "primaryAccounts": {cap: account.id for cap in [CORE, *acct["accountCapabilities"]]},
        "username": account.user,
        "apiUrl": f"{base}/jmap/api",
        "downloadUrl": f"{base}/jmap/download/{{accountId}}/{{blobId}}/{{name}}?accept={{type}}",
        "uploadUrl": f"{base}/jmap/upload/{{accountId}}",
        # RFC 8620 §2 requires the field; HTTP APIs cannot stream (issue 14), so the front answers it
        # with an error and push is the RFC 8887 WebSocket the front advertises
        "eventSourceUrl": f"{base}/jmap/eventsource/?types={{types}}&closeafter={{closeafter}}&ping={{ping}}",
    }
    if push_url:
        from .websocket import WEBSOCKET, capability

        out["capabilities"][WEBSOCKET] = capability(push_url)
    out["state"] = state(account)
    return out


def state(account: Account) -> str:
    """Changes exactly when what the session says about the account does (not with the URL it is served at)."""
    from .postern import account_capability
    from .sievescript import capability

    said = {"caps": capabilities(), "account": [account.id, account.user, account.name, mail_limits(account),
                                                SUBMISSION_LIMITS, account.rules is not None,
                                                account.presign_upload is not None, account_capability(account),
                                                capability(account) if account.scripts is not None else None]}
    return hashlib.sha256(json.dumps(said, sort_keys=True).encode()).hexdigest()[:16]
