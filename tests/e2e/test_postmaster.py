"""postmaster@ and abuse@ of a domain added after start reach the admin (RFC 5321 §4.5.1, RFC 2142).

Through the stack: the MX accepts them at RCPT, the router delivers them to POSTERN_ADMIN_ADDRESS
(the local stack's default: the demo user). Routing cases: tests/unit/test_routing_roles.py.
"""

from __future__ import annotations

import smtplib

from postern_local.faultrun import mailbox_ids, make_message


def test_role_accounts_of_a_new_domain_reach_the_admin(stack, new_domain):
    assert stack.settings.admin_address == stack.demo_user
    domain = new_domain()
    sent = []
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as c:
        for rcpt in (f"postmaster@{domain}", f"Abuse@{domain.upper()}"):
            mid, raw = make_message("reporter@remote.test", [rcpt])
            assert c.sendmail("reporter@remote.test", [rcpt], raw) == {}
            sent.append(mid)
        c.mail("reporter@remote.test")
        code, _ = c.rcpt(f"hostmaster@{domain}")  # not a role account we invent
    assert code == 550
    stack.drain()
    got = mailbox_ids(stack.store, [stack.demo_user])[stack.demo_user]
    assert all(got[mid] == 1 for mid in sent), (sent, got)
