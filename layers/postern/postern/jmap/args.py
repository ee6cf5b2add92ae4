"""Reading method arguments: types checked once, ``invalidArguments`` on anything else.

In:   a method call's argument object (already result-reference resolved).
Out:  typed values; :func:`ids` enforces ``maxObjectsInGet`` (RFC 8620 §5.1
      ``requestTooLarge``).
Fails: :class:`~.errors.MethodError` (``invalidArguments``, ``requestTooLarge``).
"""

from __future__ import annotations

import re

from .errors import MethodError, invalid_arguments
from .session import CORE_LIMITS

_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")  # RFC 8620 §1.2


def is_id(value) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def known(args: dict, allowed: set[str]) -> None:
    extra = [k for k in args if k not in allowed]
    if extra:
        raise invalid_arguments(f"unknown argument {str(extra[0])[:60]!r}")


def ids(args: dict, name: str = "ids", limit: int | None = None) -> list[str] | None:
    v = args.get(name)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(i, str) for i in v):
        raise invalid_arguments(f"{name} must be a list of ids")
    if len(v) > (limit or CORE_LIMITS["maxObjectsInGet"]):
        raise MethodError("requestTooLarge", f"at most {CORE_LIMITS['maxObjectsInGet']} ids")
    return v


def strings(args: dict, name: str) -> list[str] | None:
    v = args.get(name)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(i, str) for i in v) or len(v) > 1000:
        raise invalid_arguments(f"{name} must be a list of strings")
    return v


def boolean(args: dict, name: str, default: bool = False) -> bool:
    v = args.get(name, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise invalid_arguments(f"{name} must be a boolean")
    return v


def integer(args: dict, name: str, default: int | None = None, minimum: int | None = 0) -> int | None:
    v = args.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or abs(v) > 2**53 - 1:  # RFC 8620 §1.3 Int
        raise invalid_arguments(f"{name} must be an integer")
    if minimum is not None and v < minimum:
        raise invalid_arguments(f"{name} must be at least {minimum}")
    return v


def state(args: dict, name: str = "sinceState") -> int:
    v = args.get(name)
    if not isinstance(v, str) or not v.isdigit() or len(v) > 18:
        raise MethodError("cannotCalculateChanges", f"{name} is not a state of this server")
    return int(v)


def obj(args: dict, name: str) -> dict | None:
    v = args.get(name)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise invalid_arguments(f"{name} must be an object")
    return v


def set_limit(create: dict | None, update: dict | None, destroy: list | None) -> None:
    n = len(create or {}) + len(update or {}) + len(destroy or [])
    if n > CORE_LIMITS["maxObjectsInSet"]:
        raise MethodError("requestTooLarge", f"at most {CORE_LIMITS['maxObjectsInSet']} objects in one /set")
