"""Two AWS rules moto skips under concurrent requests: a DynamoDB write is atomic per
item, and an S3 GET that raced an overwrite still returns the object it found.

In:   nothing; :func:`install` patches moto's in-process DynamoDB and S3 backends (used
      by ``mock_aws`` in tests and by the ThreadedMotoServer of ``make run``).
Out:  every item read and write of the DynamoDB backend runs under one lock, so a
      conditional UpdateItem / PutItem evaluates its condition and applies its
      update with no other request in between, as DynamoDB guarantees; an S3 object
      displaced by a PUT or DELETE keeps its bytes readable for a request that had
      already looked it up (S3's read-after-write model: a GET sees the old object
      or the new one, whole, never an error).
Fails: never; calling it twice is harmless.

Why: moto evaluates a ConditionExpression and then mutates the item without a
lock; two threads (two gateway sessions, a gateway and a Lambda) could both pass
``attribute_not_exists(ms) OR ms < :n`` and both apply ``ADD used :d``. The mail
store's change log relies on per-item atomicity (it uses no transactions), so
the local stack and the tests must have it. Measured before the patch: 4 threads
x 200 conditional updates of one item applied 206 times instead of at most 200.
And moto closes a displaced S3 object's temporary file at once: a GET that had
fetched the object before a concurrent PUT of the same key (the store writes
content-addressed blobs, so two deliveries of one message do exactly that) then
failed with ``ValueError: I/O operation on closed file`` (seen in CI, in
``test_concurrent_appends_get_distinct_uids[dynamo]``).
"""

from __future__ import annotations

import functools
import io
import threading

_LOCK = threading.RLock()
_METHODS = ("put_item", "get_item", "query", "scan", "update_item", "delete_item", "transact_write_items")


def install() -> None:
    _install_dynamodb()
    _install_s3()


def _install_dynamodb() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in _METHODS:
        fn = getattr(DynamoDBBackend, name)
        if getattr(fn, "_postern_atomic", False):
            continue

        def locked(*args, __fn=fn, **kwargs):
            with _LOCK:
                return __fn(*args, **kwargs)

        functools.update_wrapper(locked, fn)
        locked._postern_atomic = True
        setattr(DynamoDBBackend, name, locked)


def _install_s3() -> None:
    from moto.s3.models import FakeKey

    dispose = FakeKey.dispose
    if getattr(dispose, "_postern_atomic", False):
        return

    def keep_readable(self, garbage: bool = False, __dispose=dispose) -> None:
        """Close the spooled file as moto does, but leave the bytes in memory for a
        reader that still holds this key (garbage collection frees them)."""
        if garbage:  # collected: nobody holds it any more
            return __dispose(self, garbage)
        with self.lock:  # FakeKey.value reads under this lock
            try:
                self._value_buffer.seek(0)
                data = self._value_buffer.read()
            except ValueError:  # already closed
                data = None
            __dispose(self, garbage)
            if data is not None:
                self._value_buffer = io.BytesIO(data)

    functools.update_wrapper(keep_readable, dispose)
    keep_readable._postern_atomic = True
    FakeKey.dispose = keep_readable
