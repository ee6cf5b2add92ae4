"""Who is calling: one set of credentials per component, as each would have on AWS.

In:   the roles of :mod:`postern_local.rules.roles` (gateway task role, one
      role per Lambda function).
Out:  :class:`Identities`: ``admin`` (the operator: the CLI, the tests' set-up
      and read-back, the local stack's own plumbing: allowed everything, as an
      account administrator is), and ``for_component(name)`` -> the
      :class:`Principal` of ``"gateway"`` or a function's logical id, with
      temporary-style credentials (``ASIA...`` key, secret, session token)
      the process of that component signs with. ``lookup(access_key)`` is how
      the proxy knows the caller. ``Principal.env()`` is what a process needs
      in its environment; ``Principal.session()`` a boto3 session for an
      in-process component (the gateway inside ``postern-local``).
Fails: ``for_component`` raises KeyError for a component the template gives
      no role.

The admin keeps the fixed fake credentials (``testing``), so scripts and the
``.postern-local/env`` file work as before; every component key is random per
stack, so a component can only act with its own role.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from .roles import ACCOUNT, Role, Roles

ADMIN_KEY = "testing"
ADMIN_SECRET = "testing"
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True)
class Principal:
    component: str  # "admin", "gateway", or a function's logical id
    arn: str
    access_key: str
    secret_key: str
    session_token: str
    role: Role | None  # None: the administrator, allowed everything

    @property
    def is_admin(self) -> bool:
        return self.role is None

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_SESSION_TOKEN": self.session_token, "AWS_SECURITY_TOKEN": self.session_token}

    def session(self, region: str):
        import boto3

        return boto3.session.Session(aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                                     aws_session_token=self.session_token, region_name=region)


ADMIN = Principal("admin", f"arn:aws:iam::{ACCOUNT}:user/postern-local-admin", ADMIN_KEY, ADMIN_SECRET,
                  "testing", None)


class Identities:
    def __init__(self) -> None:
        self.admin = ADMIN
        self.roles: Roles | None = None
        self._by_key: dict[str, Principal] = {ADMIN_KEY: ADMIN}
        self._by_component: dict[str, Principal] = {"admin": ADMIN}
        self._lock = threading.Lock()

    def set_roles(self, roles: Roles) -> None:
        """Create one principal per component the template gives a role."""
        with self._lock:
            self.roles = roles
            for component, role_logical in roles.by_component.items():
                role = roles.roles[role_logical]
                key = "ASIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
                session_name = component if component != "gateway" else "gateway-task"
                p = Principal(component, f"arn:aws:sts::{ACCOUNT}:assumed-role/{role.name}/{session_name}", key,
                              secrets.token_urlsafe(30), secrets.token_urlsafe(48), role)
                self._by_key[key] = p
                self._by_component[component] = p

    def lookup(self, access_key: str) -> Principal | None:
        return self._by_key.get(access_key)

    def for_component(self, component: str) -> Principal:
        try:
            return self._by_component[component]
        except KeyError:
            raise KeyError(f"template.yaml gives {component!r} no IAM role") from None

    def components(self) -> list[str]:
        return [c for c in self._by_component if c != "admin"]
