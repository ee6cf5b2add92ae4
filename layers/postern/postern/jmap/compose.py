"""Email/set create: not yet (the Email is refused with ``forbidden``; Email/import will come first)."""

from __future__ import annotations

from .errors import MethodError


def create_email(call, view, obj) -> dict:
    raise MethodError("forbidden", "creating Emails is not supported by this server yet")
