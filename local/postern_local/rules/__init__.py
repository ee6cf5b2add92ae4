"""The AWS rules moto skips, enforced in one place: an HTTP proxy in front of moto.

Every process of the local stack (the gateway, each Lambda worker, the CLI,
the tests) reaches "AWS" through ``AWS_ENDPOINT_URL``, which points at this
proxy; the proxy checks each request and passes it to moto or answers with the
error AWS would give, in the service's own protocol, so production code's
error handling runs as it would on AWS.

What it enforces (the list is ``/work/shared/AWS-LIMITS.md``; each module
cites its AWS source):
  * IAM (:mod:`.roles`, :mod:`.policy`, :mod:`.actions`, :mod:`.identities`):
    each component signs with credentials of its own role and may do only what
    that role's identity policy in template.yaml allows, SAM policy templates
    expanded by aws-sam-translator. Error: AccessDenied / AccessDeniedException.
  * SQS (:mod:`.sqs`): visibility at most 12 h counted from the receive,
    message size at most the queue's MaximumMessageSize, DelaySeconds at most
    900, queue attribute ranges.
  * SES (:mod:`.ses`): verified senders (sending address, From:, Sender:),
    at most 50 recipients, sandbox recipients verified, 40 MB, 1,000-character
    lines, ASCII local parts.
  * DynamoDB (:mod:`.dynamodb`): items at most 400 KB, transactions at most
    100 actions and 4 MB.
  * ACM (:mod:`.acm`): at most 10 names per requested certificate, a first
    name of at most 64 octets, DNS names only.
What it cannot check (conditions, resource policies, trust policies) is
listed by :func:`.roles.paper_only` and ``python -m postern_local.rules``.

Settings (read here, from the local stack's environment):
  ``POSTERN_LOCAL_RULES``        ``on`` (default) or ``off`` (moto as is: for
                                 bisecting a failure, never for tests)
  ``POSTERN_LOCAL_SES_SANDBOX``  ``true`` to behave like an account still in
                                 the SES sandbox (default ``false``: production
                                 access, as the README's Deploy section asks for)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class RulesConfig:
    enabled: bool = True
    ses_sandbox: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RulesConfig:
        return cls(
            enabled=env.get("POSTERN_LOCAL_RULES", "on").strip().lower() not in ("off", "false", "0", "no"),
            ses_sandbox=env.get("POSTERN_LOCAL_SES_SANDBOX", "false").strip().lower() in ("true", "1", "yes", "on"),
        )


@dataclass
class Rewrite:
    """A batch with some entries refused: forward ``params`` (the rest), report ``failed``."""

    params: dict
    failed: list[dict] = field(default_factory=list)


@dataclass
class Answer:
    """The proxy answers the call itself (after its checks), with this JSON body and status 200."""

    body: dict
