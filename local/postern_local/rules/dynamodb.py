"""DynamoDB limits that moto does not enforce exactly.

In:   DynamoDB calls (JSON 1.0) before they reach moto.
Out:  :class:`DynamoRules` ``before(call)`` raises :class:`~postern_local.rules.wire.AwsError`
      (``ValidationException``, as DynamoDB answers) for a write AWS refuses.
Fails: only as AWS would.

The rules (DynamoDB Developer Guide, "Service, account, and table quotas";
API Reference TransactWriteItems):
  * An item is at most 400 KB (409,600 bytes) counting attribute names and
    values as the guide defines item size (the same computation the cost
    counter uses: :func:`postern_local.requests.item_size`): PutItem, the Put
    requests of BatchWriteItem and the Put actions of TransactWriteItems.
    UpdateItem is left to moto, which refuses an update whose result passes
    its own estimate of the limit (about 405,000 bytes: 1 % stricter).
  * TransactWriteItems: at most 100 actions (moto agrees) and at most 4 MB
    in aggregate (moto does not check). The aggregate counted here is what
    the request carries (items of Put, keys and values of Update, keys of
    Delete and ConditionCheck): a lower bound of what DynamoDB counts.
  * TransactGetItems: at most 100 actions (moto still refuses more than 25,
    the limit before 2022; Postern does not use it).
"""

from __future__ import annotations

from ..requests import item_size
from .wire import AwsError, Call

MAX_ITEM = 400 * 1024
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024

ITEM_TOO_LARGE = "Item size has exceeded the maximum allowed size"


class DynamoRules:
    def before(self, call: Call):
        p = call.params
        op = call.operation
        if op == "PutItem":
            _check_item(p.get("Item"))
        elif op == "BatchWriteItem":
            for requests in (p.get("RequestItems") or {}).values():
                for r in requests:
                    _check_item((r.get("PutRequest") or {}).get("Item"))
        elif op in ("TransactWriteItems", "TransactGetItems"):
            items = p.get("TransactItems") or []
            if len(items) > MAX_TRANSACTION_ITEMS:
                raise AwsError("ValidationException", "1 validation error detected: Value at 'transactItems' failed "
                                                      "to satisfy constraint: Member must have length less than or "
                                                      f"equal to {MAX_TRANSACTION_ITEMS}")
            if op == "TransactWriteItems":
                total = 0
                for action in items:
                    for kind, spec in action.items():
                        if kind == "Put":
                            _check_item(spec.get("Item"))
                            total += item_size(spec.get("Item"))
                        else:
                            total += item_size(spec.get("Key"))
                            total += sum(item_size({k: v}) for k, v in
                                         (spec.get("ExpressionAttributeValues") or {}).items())
                if total > MAX_TRANSACTION_BYTES:
                    raise AwsError("ValidationException",
                                   f"Transaction request cannot be larger than 4 MB (this one carries {total} bytes)")
        return None


def _check_item(item: dict | None) -> None:
    if item and item_size(item) > MAX_ITEM:
        raise AwsError("ValidationException", ITEM_TOO_LARGE)
