"""``python -m postern_local.rules [template.yaml]``: what the local stack enforces for IAM, and what not.

Prints each component's role and the grants the local stack will enforce for
it (SAM policy templates expanded), then what is checked on paper only
(statement conditions, resource-based and trust policies). Needs no stack.
"""

from __future__ import annotations

import sys

from ..resources import LocalResources, physical_name
from ..template import load_template
from .roles import load_roles, paper_only


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    template = load_template(argv[0] if argv else None)
    res = LocalResources(prefix="postern")
    roles = load_roles(template, lambda logical, rtype: physical_name(res, logical, rtype), "us-east-1", "postern",
                       {"MailDomain": "example.test", "GatewayHostname": "mail.example.test", "GatewayImage": "x"})
    for component, logical in sorted(roles.by_component.items()):
        role = roles.roles[logical]
        print(f"{component}: role {logical} ({', '.join(role.sources)})")
        for s in role.policy.statements:
            acts = ", ".join(s.actions or [f"NOT {a}" for a in s.not_actions])
            res_ = ", ".join(s.resources or [f"NOT {r}" for r in s.not_resources])
            print(f"  {s.effect:<5} {acts}\n        on {res_}{'  [condition not checked]' if s.condition else ''}")
    print("\nChecked on paper only (cfn-lint, checkov), not by the local stack:")
    for line in paper_only(roles):
        print(f"  - {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
