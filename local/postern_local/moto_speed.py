"""moto's SQS and DynamoDB at a cost per request that does not grow with the backlog.

In:   nothing; :func:`install` patches moto's in-process SQS and DynamoDB models (used by
      ``mock_aws`` in tests and by the rules proxy's moto of ``make run`` / ``make faults``).
Out:  the same answers as moto's own code, computed in time independent of how many
      messages a queue holds and of how many items other partitions of a table hold:
        * SQS: a message's "visible" / "delayed" test reads moto's clock once per request
          instead of twice per message; GetQueueAttributes computes the queue's attributes
          once (moto computed them three times per name asked for); the retention check
          of each received message reads the queue's retention period directly (moto
          computed every attribute of the queue, itself three passes over every message,
          three times, for each message it returned).
        * DynamoDB: a Query of the base table reads the one partition its key names
          (moto sorted every item of the table, then kept those of the partition); with a
          string sort key, a key condition on it and a Limit, moto is handed only the page's
          window of the partition (the items the key condition keeps, past ExclusiveStartKey,
          Limit + 2 of them in the Query's direction, and the partition's next item when the
          window reaches the end of those the condition keeps): moto walked the whole partition,
          computing each item's size and comparing each with the start key, so a Query of one
          page of 50 cost as much as the partition's items (an account's every message).
Fails: never; calling it twice is harmless. A shape it does not handle (an index, a number or
      binary sort key, a legacy KeyConditions filter) takes moto's own path.

Why (``make faults``, 300 messages, py-spy of the stack's process, GIL samples): 57% of the
time moto's SQS spent in ``Message.visible`` / ``Message.delayed`` (``utcnow`` and
``fromtimestamp`` per message per pass) inside GetQueueAttributes and ReceiveMessage, and a
base-table Query sorted the whole mail table. Both grow with the backlog, so the cost per
message grew with the number of messages: 200 drained in minutes, 2,000 never did (a receive
of 10 from a queue of 2,000 walked the queue 90 times).

moto's SQS clock stays the module attribute ``moto.sqs.models.unix_time_millis`` (read at
each call), so :mod:`postern_local.timetravel` still moves every message timer.
"""

from __future__ import annotations

import bisect
import contextvars
import functools

# The partition a base-table Query reads, and its window when one can be cut (set for the
# duration of Table.query): (table, hash key, window or None).
_PARTITION: contextvars.ContextVar = contextvars.ContextVar("postern_moto_partition", default=None)

# Key condition operators on a string sort key (moto's spellings, upper-cased) -> test on the str.
_KEY_TESTS = {
    "=": lambda k, a: k == a, "EQ": lambda k, a: k == a,
    "<": lambda k, a: k < a, "LT": lambda k, a: k < a,
    "<=": lambda k, a: k <= a, "LE": lambda k, a: k <= a,
    ">": lambda k, a: k > a, "GT": lambda k, a: k > a,
    ">=": lambda k, a: k >= a, "GE": lambda k, a: k >= a,
    "BEGINS_WITH": lambda k, a: k.startswith(a),
    "BETWEEN": lambda k, a, b: a <= k <= b,
}


def install() -> None:
    _install_sqs()
    _install_dynamodb()


def _mark(fn, original):
    functools.update_wrapper(fn, original)
    fn._postern_speed = True
    return fn


def _installed(obj) -> bool:
    return getattr(obj, "_postern_speed", False) or getattr(getattr(obj, "fget", None), "_postern_speed", False)


# ---------------------------------------------------------------- SQS
def _install_sqs() -> None:
    from moto.sqs import models

    Queue, Backend = models.Queue, models.SQSBackend
    if _installed(Queue.__dict__["messages"]):
        return

    def now() -> float:
        return models.unix_time_millis()  # the module attribute: timetravel.frozen replaces it

    # Message.visible is ``now > visible_at``, Message.delayed ``now < delayed_until``.
    def messages(self):
        t = now()
        return [m for m in self._messages if t > m.visible_at and not t < m.delayed_until]

    def delayed(self):
        t = now()
        return sum(1 for m in self._messages if t < m.delayed_until)

    def not_visible(self):
        t = now()
        return sum(1 for m in self._messages if not t > m.visible_at)

    def approximate(self):
        return len(self.messages)

    for name, fn in (("messages", messages), ("approximate_number_of_messages_delayed", delayed),
                     ("approximate_number_of_messages_not_visible", not_visible),
                     ("approximate_number_of_messages", approximate)):
        setattr(Queue, name, property(_mark(fn, Queue.__dict__[name].fget)))

    get_attributes = Backend.get_queue_attributes

    def get_queue_attributes(self, queue_name: str, attribute_names: list[str]) -> dict:
        queue = self.get_queue(queue_name)
        if not attribute_names:
            return {}
        valid = ["All"] + queue.BASE_ATTRIBUTES + queue.FIFO_ATTRIBUTES + queue.KMS_ATTRIBUTES
        if any(name not in valid for name in attribute_names):
            return get_attributes(self, queue_name, attribute_names)  # moto's own InvalidAttributeName
        attributes = queue.attributes
        if "All" in attribute_names:
            return attributes
        return {name: attributes[name] for name in attribute_names if attributes.get(name) is not None}

    Backend.get_queue_attributes = _mark(get_queue_attributes, get_attributes)

    def is_message_valid_based_on_retention_period(self, queue_name: str, message) -> bool:
        retention = self.get_queue(queue_name).message_retention_period
        return retention + message.sent_timestamp / 1000 > models.unix_time()

    Backend.is_message_valid_based_on_retention_period = _mark(
        is_message_valid_based_on_retention_period, Backend.is_message_valid_based_on_retention_period)


# ---------------------------------------------------------------- DynamoDB
def _install_dynamodb() -> None:
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    if _installed(Table.query):
        return
    query, all_items = Table.query, Table.all_items

    names = ("range_comparison", "range_objs", "limit", "exclusive_start_key", "scan_index_forward",
             "projection_expressions", "index_name")

    def window(self, hash_key, a: dict, extra: dict):
        """The slice of the partition moto's loop would reach, ascending by sort key (moto reverses
        it for a backward Query), or None when this shape is left to moto. String sort keys compare
        as Python str (code points: the order of their UTF-8 bytes, as DynamoDB sorts them)."""
        op, objs, limit = a.get("range_comparison"), a.get("range_objs") or [], a.get("limit")
        if self.range_key_type != "S" or not op or extra or op.upper() not in _KEY_TESTS:
            return None
        if any(getattr(o, "type", None) != "S" for o in objs):
            return None
        part = self.items.get(hash_key)
        if part is None or isinstance(part, Item):
            return None
        test, values = _KEY_TESTS[op.upper()], [o.value for o in objs]
        kept = sorted(((it.range_key.value, it) for it in part.values() if test(it.range_key.value, *values)),
                      key=lambda kv: kv[0])
        keys = [k for k, _ in kept]
        lo, hi = 0, len(kept)
        start = (a.get("exclusive_start_key") or {}).get(self.range_key_attr)
        forward = a.get("scan_index_forward") is not False
        if start is not None:  # the start item itself stays in: moto's loop skips it (<= start)
            if "S" not in start:
                return None
            if forward:
                lo = bisect.bisect_left(keys, start["S"])
            else:
                hi = bisect.bisect_right(keys, start["S"])
        if not isinstance(limit, int):
            return [it for _, it in kept[lo:hi]]
        # Limit + the start item + one past the page: moto sets LastEvaluatedKey when an item
        # follows a full page, even one the key condition would not keep (its length test comes
        # first), so a window that reaches the end of the kept items takes that neighbour too.
        if forward:
            hi = min(hi, lo + limit + 2)
            out = [it for _, it in kept[lo:hi]]
            if hi == len(kept) and kept:
                after = [it for it in part.values() if it.range_key.value > keys[-1]]
                out += [min(after, key=lambda it: it.range_key.value)] if after else []
            return out
        lo = max(lo, hi - limit - 2)
        out = [it for _, it in kept[lo:hi]]
        if lo == 0 and kept:
            before = [it for it in part.values() if it.range_key.value < keys[0]]
            out[:0] = [max(before, key=lambda it: it.range_key.value)] if before else []
        return out

    def query_partition(self, hash_key, *args, **kwargs):
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        a = {**dict(zip(names, args)), **{k: v for k, v in kwargs.items() if k in names}}
        extra = {k: v for k, v in kwargs.items()
                 if k not in names and k not in ("consistent_read", "filter_expression", "hash_key_conditions",
                                                 "range_key_conditions")}
        conditions = kwargs.get("range_key_conditions")
        if len(args) > 9 or (conditions and len(conditions) > 1):
            cut = None  # a shape this does not know: moto's own walk of the partition
        else:
            cut = window(self, hash_key, a, extra)
        token = _PARTITION.set((self, hash_key, cut))
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _PARTITION.reset(token)

    def partition_items(self) -> list:
        """During a base-table Query, its window (see ``window``) or the items of its partition
        (moto keeps those with the key it asked for, sorted by range key); otherwise every item,
        as moto does."""
        hint = _PARTITION.get()
        if hint is None or hint[0] is not self:
            return all_items(self)
        if hint[2] is not None:
            return hint[2]
        part = self.items.get(hint[1])
        if part is None:
            return []
        if isinstance(part, Item):
            return [part]
        return sorted(part.values(), key=lambda x: x.range_key)

    Table.query = _mark(query_partition, query)
    Table.all_items = _mark(partition_items, all_items)
