"""The mail store's layering, checked on the source: each rule once, one way in from the protocols.

* The protocol servers (IMAP, POP3) reach the mail store only through the
  Backend's async facade (``backend.mail``): never ``backend.store`` and never
  a store method handed to ``backend.run`` (issue 10: one facade, not 35
  hand-written executor calls).
* No DynamoDB transaction anywhere (a change is one conditional write).
* The INBOX rule (case-insensitive, also as a superior) is written once,
  ``store.base.normalize_mailbox_name``; the default SPECIAL-USE mailboxes once,
  in ``postern.mailboxes``.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = [REPO / "layers/postern/postern", REPO / "gateway/postern_gateway", REPO / "functions"]
PROTOCOLS = [REPO / "gateway/postern_gateway/imap", REPO / "gateway/postern_gateway/pop3"]


def _sources(roots):
    for root in roots:
        for p in sorted(root.rglob("*.py")):
            if "build" not in p.relative_to(REPO).parts:
                yield p, p.read_text()


def test_protocols_reach_the_store_only_through_the_facade():
    bad = re.compile(r"backend\.store\b|\.run(?:_bulk)?\([^)]*\bstore\b")
    found = [f"{p.relative_to(REPO)}:{i}" for p, text in _sources(PROTOCOLS)
             for i, line in enumerate(text.splitlines(), 1) if bad.search(line)]
    assert not found, f"store calls around backend.mail: {found}"


def test_the_inbox_rule_and_the_default_mailboxes_are_written_once():
    inbox = re.compile(r"""\.upper\(\)\s*==\s*["']INBOX["']|\[:6\]\.upper\(\)""")
    specials = re.compile(r"""["']\\\\(?:Sent|Drafts|Trash|Junk|Archive)["']""")
    rule_home = REPO / "layers/postern/postern/store/base.py"
    defaults_home = REPO / "layers/postern/postern/mailboxes.py"
    # a LIST pattern's INBOX prefix ("inbox*" matches INBOX) is a pattern rule, not a name rule
    patterns = REPO / "gateway/postern_gateway/imap/listpattern.py"
    copies, defaults = [], []
    for p, text in _sources(PRODUCTION):
        for i, line in enumerate(text.splitlines(), 1):
            if inbox.search(line) and p not in (rule_home, patterns):
                copies.append(f"{p.relative_to(REPO)}:{i}")
            if specials.search(line) and p != defaults_home:
                defaults.append(f"{p.relative_to(REPO)}:{i}")
    assert not copies, f"a second copy of the INBOX rule (call normalize_mailbox_name): {copies}"
    assert not defaults, f"default SPECIAL-USE mailboxes named outside postern.mailboxes: {defaults}"


def test_no_transactions_anywhere():
    """One conditional write per change, no TransactWriteItems (issue 10: "no transaction where none is
    needed"): a change is its log record, and everything else is rolled forward from it. A transaction
    added later must come with a reason and with its failures identified by name, not by position."""
    found = [f"{p.relative_to(REPO)}:{i}" for p, text in _sources(PRODUCTION)
             for i, line in enumerate(text.splitlines(), 1) if re.search(r"transact_(write|get)_items", line)]
    assert not found, found
