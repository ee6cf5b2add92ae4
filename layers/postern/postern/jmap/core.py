"""Core/echo (RFC 8620 §4): the arguments come back unchanged."""

from __future__ import annotations


def echo(call, args: dict) -> dict:
    return args
