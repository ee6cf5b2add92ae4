"""Password hashing with the production argon2id parameters."""

import pytest

from postern import passwords

pytestmark = pytest.mark.real_argon2


def test_production_parameters_are_argon2id_rfc9106():
    h = passwords.hash_password("correct horse")
    assert h.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert passwords.verify_password(h, "correct horse")
    assert not passwords.verify_password(h, "wrong")
    assert not passwords.needs_rehash(h)


def test_unknown_user_and_garbage_hash_never_verify():
    assert not passwords.verify_password(None, "anything")
    assert not passwords.verify_password("not-a-hash", "anything")


def test_cheap_hash_is_rehashed_to_production_parameters():
    from argon2 import PasswordHasher

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("pw")
    assert passwords.needs_rehash(cheap)
