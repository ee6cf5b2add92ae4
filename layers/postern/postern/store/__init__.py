"""The mail store: mailboxes and messages for IMAP, POP3 and (next) JMAP, on DynamoDB + S3.

``base`` holds the interface and data objects; ``engine`` the one
implementation (an account change log over an item layer and a blob layer),
``records`` its item formats, ``materialise`` how a committed change is rolled
forward, ``schema`` the layout version and migrations, ``threads`` thread ids,
``blobs`` S3 and its twin; ``dynamo`` and ``memory`` pick the layers. Both pass
the same contract suite (tests/unit/test_store_contract.py). ``summary``
derives what IMAP needs from a message without touching S3 again. The mailbox
rules (INBOX, hierarchy, defaults, names) live above, in ``postern.mailboxes``.
"""

from .base import (
    AppendResult,
    Change,
    MailboxInfo,
    MailStore,
    MessageMeta,
    normalize_mailbox_name,
)

__all__ = [
    "AppendResult",
    "Change",
    "MailboxInfo",
    "MailStore",
    "MessageMeta",
    "normalize_mailbox_name",
    "dynamo_store",
    "memory_store",
]


def dynamo_store(settings=None, clients=None):
    from .dynamo import DynamoMailStore

    return DynamoMailStore(settings=settings, clients=clients)


def memory_store():
    from .memory import MemoryMailStore

    return MemoryMailStore()
