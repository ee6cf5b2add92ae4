"""junk - the daily mail-store housekeeping per user (as Postfix's periodic cleanup jobs): the store's
sweeper, then the expiry of old Junk mail.

READS
    An EventBridge schedule event (once a day; the event's content is not
    used). The directory (every user, one Query per domain), each user's
    pending store work (the account item, the change after it, the SW# items:
    two GetItems and a Query) and Junk mailbox index (postern.sieve.expiry).
WRITES
    The mail store: the sweeper's work (``MailStore.sweep``: the messages and
    blobs of mailboxes deleted while the gateway that took the DELETE died
    before its own sweep ran, and a change committed but never rolled
    forward); then an EXPUNGE of every Junk message older than
    POSTERN_JUNK_EXPIRE_DAYS days (30), through the store's change log, so
    quota, counters and IMAP/JMAP views stay right. Once a run, the spool
    sweep (``postern.store.spoolsweep``): spool objects past the spool window
    (POSTERN_SPOOL_RETENTION_DAYS) that no mailbox references are deleted (a
    delivered message's spool object is its mailbox blob, so no bucket
    lifecycle rule may expire the spool prefix).
FAILURES
    A backend fault for one user is logged and counted (JunkExpiryErrors); the
    others are still swept and the next day's run tries again. Nothing is
    retried within a run: a sweep or an expiry a day late loses nothing (both
    are resumable; a deleted mailbox's quota was freed at DELETE).
CODE
    postern.store (sweep), postern.sieve.expiry.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from postern.aws import get_clients
from postern.config import get_settings
from postern.directory import dynamo_directory
from postern.errors import PosternError
from postern.sieve.expiry import expire_junk
from postern.store.dynamo import DynamoMailStore

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event, context):
    settings, clients = get_settings(), get_clients()
    store = DynamoMailStore(settings, clients)
    removed = released = errors = users = 0
    for user in dynamo_directory(settings, clients).list_users(None):
        users += 1
        try:
            released += store.sweep(user.address)
            removed += expire_junk(store, user.address, settings.junk_expire_days)
        except PosternError as exc:
            errors += 1
            logger.warning("store housekeeping failed", user=user.address, error=exc.text)
    try:  # once a run, not per user: spool objects past the window that no mailbox references
        spooled = store.sweep_spool()
    except PosternError as exc:
        errors += 1
        spooled = 0
        logger.warning("spool sweep failed", error=exc.text)
    metrics.add_metric(name="SpoolSwept", unit=MetricUnit.Count, value=spooled)
    metrics.add_metric(name="JunkExpired", unit=MetricUnit.Count, value=removed)
    metrics.add_metric(name="StoreSwept", unit=MetricUnit.Count, value=released)
    if errors:
        metrics.add_metric(name="JunkExpiryErrors", unit=MetricUnit.Count, value=errors)
    logger.info("store housekeeping", users=users, released=released, removed=removed, errors=errors,
                days=settings.junk_expire_days, spool_swept=spooled)
    return {"users": users, "released": released, "removed": removed, "errors": errors, "spool_swept": spooled}
