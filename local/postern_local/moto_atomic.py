"""One AWS rule moto skips: a DynamoDB write is atomic per item, also under concurrent requests.

In:   nothing; :func:`install` patches moto's in-process DynamoDB backend (used by
      ``mock_aws`` in tests and by the ThreadedMotoServer of ``make run``).
Out:  every item read and write of the backend runs under one lock, so a
      conditional UpdateItem / PutItem evaluates its condition and applies its
      update with no other request in between, as DynamoDB guarantees.
Fails: never; calling it twice is harmless.

Why: moto evaluates a ConditionExpression and then mutates the item without a
lock; two threads (two gateway sessions, a gateway and a Lambda) could both pass
``attribute_not_exists(ms) OR ms < :n`` and both apply ``ADD used :d``. The mail
store's change log relies on per-item atomicity (it uses no transactions), so
the local stack and the tests must have it. Measured before the patch: 4 threads
x 200 conditional updates of one item applied 206 times instead of at most 200.
"""

from __future__ import annotations

import functools
import threading

_LOCK = threading.RLock()
_METHODS = ("put_item", "get_item", "query", "scan", "update_item", "delete_item", "transact_write_items")


def install() -> None:
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
