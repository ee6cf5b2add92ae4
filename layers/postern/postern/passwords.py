"""Password hashing: argon2id (RFC 9106) via argon2-cffi.

In:   a plaintext password (never logged, never stored).
Out:  :func:`hash_password` returns an encoded ``$argon2id$...`` string;
      :func:`verify_password` returns True/False and never raises on a bad
      or foreign hash; :func:`needs_rehash` tells when parameters changed.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# RFC 9106 §4 second recommended option, memory-constrained (64 MiB, t=3).
# Lambda and the gateway both have room for it; login is rate limited.
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=1)

# Verifying against this when the user does not exist keeps the timing of
# "no such user" and "wrong password" alike.
_DUMMY = _HASHER.hash("postern-dummy-password")


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("empty password")
    return _HASHER.hash(password)


def verify_password(encoded: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(encoded or _DUMMY, password) and encoded is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(encoded: str) -> bool:
    try:
        return _HASHER.check_needs_rehash(encoded)
    except InvalidHashError:
        return True
