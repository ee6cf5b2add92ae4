"""Passwords a user may choose, and a user changing their own: one rule for the CLI and JMAP.

In:   a new password (``postern user add|passwd`` and the JMAP Postern capability's
      ``Password/change``); for a change, the directory, the old and new passwords, the
      abuse limits (:class:`postern.limits.Limits`) and the client's address.
Out:  :func:`password_problem` -> None, or why a password is refused (the policy, written
      once); :func:`change_password` stores the new hash through
      :meth:`~postern.directory.Directory.set_password`, which starts a new credential
      generation: every bearer token of the account is revoked by that one write
      (:mod:`postern.tokens`), and :class:`postern.authcache.VerifiedCache` entries of the
      old password stop matching on every gateway task (they carry the generation).
Fails: :class:`PasswordRefused` (the policy), :class:`WrongPassword` (the old password does
      not match: counted as a failed login for the address and the account, as a login
      is), :class:`~postern.errors.AuthLocked` when the lockout is on - checked BEFORE any
      hash is computed, so a stolen bearer token cannot brute-force the old password;
      StoreUnavailable from the directory.

The policy: 1 to MAX_PASSWORD characters (the HTTPS front refuses longer ones unhashed at
login, so a longer password would lock its owner out of JMAP), no control characters
(IMAP LOGIN's quoted strings and SASL PLAIN cannot carry NUL, CR or LF: the user could
not log in from a mail client), not only white space.
"""

from __future__ import annotations

from .errors import AuthLocked, PosternError

MAX_PASSWORD = 1024  # characters; postern_https.auth refuses longer ones unhashed


class PasswordRefused(PosternError):
    permanent = True
    imap_kind = "BAD"


class WrongPassword(PosternError):
    permanent = True

    @classmethod
    def default_message(cls) -> str:
        return "The current password is wrong"


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be a user's password, or None."""
    if not isinstance(password, str) or not password:
        return "empty password"
    if len(password) > MAX_PASSWORD:
        return f"a password has at most {MAX_PASSWORD} characters"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        return "a password may not contain control characters (mail clients could not send it)"
    if not password.strip():
        return "a password may not be only white space"
    return None


def check_password(password: str) -> str:
    problem = password_problem(password)
    if problem is not None:
        raise PasswordRefused(problem)
    return password


def change_password(directory, address: str, old: str, new: str, *, limits=None, ip: str = "",
                    protocol: str = "jmap") -> None:
    """The user ``address`` (canonical) proves ``old`` and sets ``new``."""
    if limits is not None:
        refusal = limits.auth_allowed(ip, address, protocol)  # before any hash
        if refusal is not None:
            raise AuthLocked(refusal.text)
    if not isinstance(old, str) or not 0 < len(old) <= MAX_PASSWORD or directory.authenticate(address, old) is None:
        if limits is not None:
            limits.auth_failed(ip, address)
        raise WrongPassword()
    check_password(new)
    directory.set_password(address, new)
