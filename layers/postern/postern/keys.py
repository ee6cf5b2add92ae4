"""Every DynamoDB key Postern uses, built here and nowhere else.

Directory table (``POSTERN_DIRECTORY_TABLE``; attributes pk, sk):
  pk=DOMAINS            sk=<domain>               a local domain (catch-all target)
  pk=D#<domain>         sk=U#<local>              a user (password hash, quota)
  pk=D#<domain>         sk=A#<local>              an alias (targets)
  pk=S#<user>           sk=SCRIPT#<name>          a user's Sieve script (id, text, size; postern.sieve.repository)
  pk=S#<user>           sk=ACTIVE                 which script is active, with a copy of its text (one read at delivery)
  pk=S#<user>           sk=MANAGED                the Postern-managed rules: vacation, filters, allow/block lists
  pk=S#<user>           sk=IDENTITIES             JMAP identities: names, signatures, extra ones (postern.identities)

Mail table (``POSTERN_MAIL_TABLE``; attributes pk, sk; no index; TTL attribute
``expires``; layout version in the META item, see postern.store.schema):
  pk=META               sk=SCHEMA                 the layout version (``postern migrate``)
  pk=U#<user>           sk=ACCT                   account: bytes used, materialised-through modseq, UIDVALIDITY floor
  pk=U#<user>           sk=MB#<name>              a mailbox name -> its stable id (or a tombstone after DELETE/RENAME)
  pk=U#<user>           sk=SUB#<name>             a subscription (RFC 3501 §6.3.6; tombstone after UNSUBSCRIBE)
  pk=U#<user>           sk=SW#<mailbox id>        a deleted mailbox whose messages the sweeper still has to release
  pk=L#<user>           sk=<modseq, 20 digits>    the account change log: one self-describing item per change
  pk=M#<user>#<mbid>    sk=#                      a mailbox's state: UIDNEXT, HIGHESTMODSEQ, counts, keywords, \Recent
  pk=M#<user>#<mbid>    sk=<uid, 10 digits>       a message index entry, or its tombstone after EXPUNGE
  pk=B#<s3 key>         sk=B                      references to a blob shared by COPY or by deliveries of one spool
                                                  object (absent: one owner), and the first deliveries' markers
                                                  d#<user>#<mailbox> (store.records.dedup_marker)
  pk=X#<queue id>       sk=<user>#<mailbox>       "this spool object was delivered to this mailbox" (uid; TTL): the
                                                  deliveries past the B# item's first few, and appends of other blobs
  pk=T#<user>#<hash>    sk=T                      a Message-ID's thread id (JMAP threads, assigned at append)
  pk=E#<user>#<email id> sk=<mbid>#<uid, 10 digits> the email-id index: one item per message holding that email
                                                  id (JMAP Email/get by id without reading the account's entries)
  pk=H#<user>#<thread id> sk=<mbid>#<generation>  a thread's messages in one mailbox: UIDs, unseen UIDs (JMAP
                                                  thread counts and Thread/get; postern.store.counts)

State table (``POSTERN_STATE_TABLE``; attributes pk, sk; TTL ``expires``):
  pk=Q#<queue id>       sk=<stage>#<time>#<n>     trace/delivery log events of one message
  pk=L#<limit>#<key>    sk=<window>               abuse-limit counters
  pk=Q#<queue id>       sk=rcpt#<recipient>       outbound delivery state of one recipient (deliverylog)
  pk=Q#<queue id>       sk=notice#<kind>#<domain> "this notice was sent" marker (deliverylog)
  pk=OUTQ               sk=<queue id>#<domain>    a pending outbound job (``postern queue list``; deliverylog)
  pk=P#<user>#<mbid>    sk=LOCK                   the POP3 maildrop lock of a session (owner, expires; pop3/lock.py)
  pk=Q#<queue id>       sk=ses#<SES message id>   what one SES send was (sender, recipients): SES events (deliverylog)
  pk=Q#<queue id>       sk=sieve#<user>#<what>    "this Sieve side effect was carried out" (redirect, vacation; TTL)
  pk=V#<user>           sk=<handle>#<sender>      a vacation reply was sent to this sender: none again before ``expires``
  pk=TOK#<sha256>       sk=bearer | ticket        an HTTPS bearer token / one-time WebSocket ticket, by the hash of its
                                                  value (user, credential generation; TTL; postern.tokens)
  pk=WS#<user>          sk=<connection id>        a JMAP WebSocket connection of the account (API Gateway's id; push
                                                  enabled, data types; TTL; postern.push): the feed's one Query
  pk=R#<kind>#<domain>  sk=<end, 10 digits>#<id>  one DMARC (kind dmarc) or TLS-RPT (tls) report's summary, or a
                                                  refused report, for reports@<domain> (postern.reports.summaries; TTL)
"""

from __future__ import annotations

UID_WIDTH = 10


def _user(user: str) -> str:
    return user.lower()


# --- directory ------------------------------------------------------------
USER_PREFIX = "U#"
ALIAS_PREFIX = "A#"
DOMAIN_MEMBERS_PREFIX = "D#"


def domain_key(domain: str) -> dict:
    return {"pk": "DOMAINS", "sk": domain.lower()}


def domains_pk() -> str:
    return "DOMAINS"


def user_key(local: str, domain: str) -> dict:
    return {"pk": domain_members_pk(domain), "sk": f"{USER_PREFIX}{local.lower()}"}


def alias_key(local: str, domain: str) -> dict:
    return {"pk": domain_members_pk(domain), "sk": f"{ALIAS_PREFIX}{local.lower()}"}


def domain_members_pk(domain: str) -> str:
    return f"{DOMAIN_MEMBERS_PREFIX}{domain.lower()}"


def user_of_key(pk: str, sk: str) -> str | None:
    """The account (``local@domain``, canonical) a directory user item's key names: the inverse of
    :func:`user_key` (the change feed reads it from the directory stream's Keys); None for any other item."""
    if not pk.startswith(DOMAIN_MEMBERS_PREFIX) or not sk.startswith(USER_PREFIX):
        return None
    local, domain = sk[len(USER_PREFIX):], pk[len(DOMAIN_MEMBERS_PREFIX):]
    return f"{local}@{domain}" if local and domain else None


# --- Sieve scripts (directory table) ----------------------------------------
SCRIPT_PREFIX = "SCRIPT#"


def sieve_pk(user: str) -> str:
    return f"S#{user.lower()}"


def sieve_script_key(user: str, name: str) -> dict:
    return {"pk": sieve_pk(user), "sk": f"{SCRIPT_PREFIX}{name}"}


def sieve_active_key(user: str) -> dict:
    return {"pk": sieve_pk(user), "sk": "ACTIVE"}


def sieve_managed_key(user: str) -> dict:
    return {"pk": sieve_pk(user), "sk": "MANAGED"}


def identities_key(user: str) -> dict:
    return {"pk": sieve_pk(user), "sk": "IDENTITIES"}

# --- mail store -----------------------------------------------------------
MAILBOX_PREFIX = "MB#"
SUB_PREFIX = "SUB#"
SWEEP_PREFIX = "SW#"
MODSEQ_WIDTH = 20
STATE_SK = "#"  # sorts before every UID sort key


def schema_key() -> dict:
    return {"pk": "META", "sk": "SCHEMA"}


def user_pk(user: str) -> str:
    return f"U#{_user(user)}"


def account_key(user: str) -> dict:
    return {"pk": user_pk(user), "sk": "ACCT"}


def mailbox_key(user: str, name: str) -> dict:
    return {"pk": user_pk(user), "sk": f"{MAILBOX_PREFIX}{name}"}


def subscription_key(user: str, name: str) -> dict:
    return {"pk": user_pk(user), "sk": f"{SUB_PREFIX}{name}"}


def sweep_key(user: str, mailbox_id: str) -> dict:
    return {"pk": user_pk(user), "sk": f"{SWEEP_PREFIX}{mailbox_id}"}


def log_pk(user: str) -> str:
    return f"L#{_user(user)}"


def modseq_sk(modseq: int) -> str:
    return f"{modseq:0{MODSEQ_WIDTH}d}"


def change_key(user: str, modseq: int) -> dict:
    return {"pk": log_pk(user), "sk": modseq_sk(modseq)}


def messages_pk(user: str, mailbox_id: str) -> str:
    return f"M#{_user(user)}#{mailbox_id}"


def state_key(user: str, mailbox_id: str) -> dict:
    return {"pk": messages_pk(user, mailbox_id), "sk": STATE_SK}


def uid_sk(uid: int) -> str:
    return f"{uid:0{UID_WIDTH}d}"


def message_key(user: str, mailbox_id: str, uid: int) -> dict:
    return {"pk": messages_pk(user, mailbox_id), "sk": uid_sk(uid)}


def email_pk(user: str, email_id: str) -> str:
    return f"E#{_user(user)}#{email_id}"


def email_key(user: str, email_id: str, mailbox_id: str, uid: int) -> dict:
    return {"pk": email_pk(user, email_id), "sk": f"{mailbox_id}#{uid_sk(uid)}"}


def blob_key(s3_key: str) -> dict:
    return {"pk": f"B#{s3_key}", "sk": "B"}


def dedup_key(dedup: str) -> dict:
    """``dedup`` is ``<queue id>#<rest>``: all local deliveries of one queue id share a
    partition, so ``postern trace`` finds them with one Query (``dedup_pk``)."""
    queue_id, _, rest = dedup.partition("#")
    return {"pk": dedup_pk(queue_id), "sk": rest or "-"}


def dedup_pk(queue_id: str) -> str:
    return f"X#{queue_id}"


def thread_key(user: str, message_id_hash: str) -> dict:
    return {"pk": f"T#{_user(user)}#{message_id_hash}", "sk": "T"}


def members_pk(user: str, thread_id: str) -> str:
    return f"H#{_user(user)}#{thread_id}"


def members_key(user: str, thread_id: str, mailbox_id: str, generation: str) -> dict:
    return {"pk": members_pk(user, thread_id), "sk": f"{mailbox_id}#{generation}"}


# --- state ----------------------------------------------------------------
def trace_pk(queue_id: str) -> str:
    return f"Q#{queue_id}"


def limit_key(limit: str, key: str, window: int) -> dict:
    return {"pk": f"L#{limit}#{key.lower()}", "sk": str(window)}


def maildrop_lock_key(user: str, mailbox_id: str) -> dict:
    """The POP3 maildrop lock of ``user``'s mailbox ``mailbox_id`` (RFC 1939 §4), in the state table."""
    return {"pk": f"P#{_user(user)}#{mailbox_id}", "sk": "LOCK"}


# --- outbound delivery log (postern.deliverylog) ----------------------------
OUTQ_PK = "OUTQ"  # one partition of pending outbound jobs: small (deleted when final), Query'd by `queue list`


def delivery_rcpt_key(queue_id: str, recipient: str) -> dict:
    return {"pk": trace_pk(queue_id), "sk": f"rcpt#{recipient.lower()}"}


def delivery_event_key(queue_id: str, stage: str, t: float, n: int = 0) -> dict:
    return {"pk": trace_pk(queue_id), "sk": f"{stage}#{t:017.6f}#{n}"}


def notice_marker_key(queue_id: str, kind: str, domain: str) -> dict:
    return {"pk": trace_pk(queue_id), "sk": f"notice#{kind}#{domain.lower()}"}


def outq_key(queue_id: str, domain: str) -> dict:
    return {"pk": OUTQ_PK, "sk": f"{queue_id}#{domain.lower()}"}


def ses_message_key(queue_id: str, message_id: str) -> dict:
    return {"pk": trace_pk(queue_id), "sk": f"ses#{message_id}"}


# --- Sieve side effects and vacation replies (state table) -------------------
def sieve_effect_key(queue_id: str, user: str, what: str) -> dict:
    return {"pk": trace_pk(queue_id), "sk": f"sieve#{user.lower()}#{what}"}


def vacation_key(user: str, handle: str, sender: str) -> dict:
    return {"pk": f"V#{user.lower()}", "sk": f"{handle}#{sender.lower()}"}


# --- HTTPS tokens and WebSocket tickets (state table; postern.tokens) ----------
def token_key(digest: str, kind: str) -> dict:
    """``digest``: SHA-256 hex of the token's value (the value itself is never stored); ``kind``: bearer | ticket."""
    return {"pk": f"TOK#{digest}", "sk": kind}


# --- JMAP WebSocket connections (state table; postern.push) ----------------------
def push_pk(user: str) -> str:
    return f"WS#{_user(user)}"


def push_key(user: str, connection_id: str) -> dict:
    return {"pk": push_pk(user), "sk": connection_id}


# --- DMARC / TLS-RPT report summaries (state table; postern.reports) --------------
def report_pk(kind: str, domain: str) -> str:
    return f"R#{kind}#{domain.lower()}"


def report_key(kind: str, domain: str, end: int, report_id: str) -> dict:
    return {"pk": report_pk(kind, domain), "sk": f"{int(end):010d}#{report_id}"}


def report_sk_from(since: int) -> str:
    """The smallest sort key of reports whose period ended at or after ``since`` (epoch seconds)."""
    return f"{max(0, int(since)):010d}"
