"""The mail store: mailboxes and messages for IMAP and POP3, on DynamoDB + S3.

``base`` holds the interface and data objects, ``dynamo`` the real
implementation, ``memory`` its in-memory twin (tests, benchmarks); both pass
the same contract suite (tests/unit/test_store_contract.py). ``summary``
derives what IMAP needs from a message without touching S3 again.
"""

from .base import (
    DEFAULT_MAILBOXES,
    AppendResult,
    MailboxInfo,
    MailStore,
    MessageMeta,
    normalize_mailbox_name,
)

__all__ = [
    "DEFAULT_MAILBOXES",
    "AppendResult",
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
