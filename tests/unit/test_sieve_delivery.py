"""Sieve at delivery (postern.sieve.delivery + effects + autoreply) through the store pipeline's deliver(),
over the in-memory store, repository, outlet and state: where mail goes, what is sent, what never is."""

from __future__ import annotations

import pytest

from postern import mailboxes
from postern.directory import memory_directory
from postern.envelope import StoreJob
from postern.items import MemoryItems
from postern.jmap.keywords import keywords
from postern.pipeline import store as pipeline
from postern.sieve.delivery import SieveDelivery
from postern.sieve.effects import Effects, MemoryOutlet, MemoryState
from postern.sieve.managed import Filter, Managed, VacationSettings
from postern.sieve.repository import ScriptRepository
from postern.store.memory import MemoryMailStore
from postern.store.summary import inline_header
from postern.verdicts import AuthFacts, SpamVerdict

USER = "user@example.test"
SENDER = "friend@example.org"
PASS = AuthFacts(spf="pass").to_dict()


def raw_message(**headers) -> bytes:
    h = {"From": f"Friend <{SENDER}>", "To": USER, "Subject": "Hello", "Message-ID": "<m1@example.org>", **headers}
    return ("".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in h.items() if v is not None)
            + "\r\nHi there.\r\n").encode()


class World:
    def __init__(self, now=1_800_000_000.0):
        self.store = MemoryMailStore()
        self.repo = ScriptRepository(MemoryItems())
        self.outlet = MemoryOutlet()
        self.state = MemoryState()
        self.directory = memory_directory()
        self.directory.add_domain("example.test")
        self.directory.add_user(USER, "pw")
        self.directory.add_alias("alias@example.test", [USER])
        self.now = now
        self.sieve = SieveDelivery(self.repo, Effects(self.outlet, self.state), self.directory,
                                   hostname="mail.example.test", body_reader=self.outlet.read_spool,
                                   clock=lambda: self.now)
        self.n = 0

    def script(self, text: str) -> None:
        self.repo.put(USER, "main", text)
        self.repo.activate(USER, "main")

    def deliver(self, raw: bytes | None = None, *, mail_from=SENDER, auth=PASS, spam=None, mailbox="INBOX",
                queue_id=None, to=USER, trace=""):
        raw = raw or raw_message()
        self.n += 1
        qid = queue_id or f"q{self.n}"
        key = f"spool/{qid}"
        self.store.put_spool(key, raw)
        self.outlet.spool[key] = raw
        job = StoreJob(queue_id=qid, s3_key=key, user=USER, mail_from=mail_from, original_recipient=to,
                       received_at=self.now, mailbox=mailbox, size=len(raw), header=inline_header(raw),
                       auth=auth or {}, spam=(spam or SpamVerdict()).to_dict(), trace_headers=trace)
        return pipeline.deliver(job, self.store, 0, self.sieve)

    def box(self, name: str) -> list[bytes]:
        try:
            mb = self.store.get_mailbox(USER, name)
        except Exception:
            return []
        return [self.store.read(m) for m in self.store.list_messages(mb)]

    def flags(self, name: str) -> list[frozenset]:
        return [m.flags for m in self.store.list_messages(self.store.get_mailbox(USER, name))]


@pytest.fixture
def w():
    return World()


def test_no_script_inbox(w):
    out = w.deliver()
    assert out.filed.stored == ["INBOX"] and len(w.box("INBOX")) == 1 and not w.outlet.submitted


def test_user_script_files_with_flags_and_create(w):
    w.script('require ["fileinto", "mailbox", "imap4flags"];\n'
             'if header :is "subject" "Hello" { fileinto :create :flags "\\\\Seen" "Friends/Mail"; }')
    out = w.deliver()
    assert out.filed.stored == ["Friends/Mail"] and w.box("INBOX") == []
    assert w.flags("Friends/Mail") == [frozenset({"\\Seen"})]


def test_fileinto_a_missing_mailbox_keeps_in_inbox(w):
    w.script('require "fileinto"; fileinto "Nope";')
    out = w.deliver()
    assert out.filed.stored == ["INBOX"] and "no mailbox 'Nope'" in out.filed.notes[0]


def test_fileinto_create_past_the_mailbox_limit_keeps_in_inbox(w, monkeypatch):
    mailboxes.ensure_defaults(w.store, USER)
    monkeypatch.setattr(mailboxes, "MAX_MAILBOXES", len(w.store.list_mailboxes(USER)) + 1)  # Friends/Mail is 2
    w.script('require ["fileinto", "mailbox"]; fileinto :create "Friends/Mail";')
    out = w.deliver()
    assert out.filed.stored == ["INBOX"] and len(w.box("INBOX")) == 1
    assert any("too many" in n for n in out.filed.notes), out.filed.notes


def test_discard_stores_nothing(w):
    w.script("discard;")
    out = w.deliver()
    assert out.result is None and out.filed.results == [] and w.box("INBOX") == []


def test_runtime_error_keeps_the_message(w):
    w.script("".join(f'redirect "r{i}@example.net";' for i in range(6)))
    out = w.deliver()
    assert out.filed.stored == ["INBOX"] and "more than 4 redirects" in out.filed.error
    assert w.outlet.submitted == []  # none of the failed script's actions ran


def test_a_stored_script_that_no_longer_compiles_keeps_the_message(w):
    from postern import keys

    w.script("keep;")
    item = w.repo.items.get(keys.sieve_active_key(USER))
    w.repo.items.put({**item, "text": "fileinot;"})  # e.g. written under another release's rules
    out = w.deliver()
    assert out.filed.stored == ["INBOX"] and "does not compile" in out.filed.notes[0]


def test_an_internal_error_delivers_where_the_router_said(w, monkeypatch):
    monkeypatch.setattr(w.sieve, "decide", lambda *a: 1 / 0)
    out = w.deliver(mailbox="Junk")
    assert out.filed.stored == ["Junk"] and "internal error" in out.filed.error


def test_redirect_copy_keeps_a_copy_and_goes_through_the_router_once(w):
    w.script('require "copy"; redirect :copy "away@example.net";')
    out = w.deliver(queue_id="qr")
    (env,) = w.outlet.submitted
    assert out.filed.stored == ["INBOX"]
    assert env.rcpt_to == ("away@example.net",) and env.mail_from == SENDER and env.redirected_by == USER
    assert env.trace_headers.startswith(f"Delivered-To: {USER}\r\n") and env.s3_key == "spool/qr"
    assert env.queue_id.startswith("qr-r")
    w.deliver(queue_id="qr")  # the store function ran twice: no second redirect
    assert len(w.outlet.submitted) == 1 and len(w.box("INBOX")) == 1


def test_redirect_loop_is_broken(w):
    w.script('redirect "away@example.net";')
    out = w.deliver(trace=f"Delivered-To: {USER}\r\n")  # it came back: we delivered it to this user before
    assert w.outlet.submitted == [] and "Delivered-To loop" in out.filed.notes[0]
    w.script('redirect "been@example.net";')
    out = w.deliver(raw_message(Delivered_To="been@example.net"))
    assert w.outlet.submitted == [] and "delivered there already" in out.filed.notes[0]


def test_reject_sends_a_report_only_to_a_verified_sender(w):
    w.script('require "reject"; reject "Not interested";')
    out = w.deliver()
    (notice,) = w.outlet.notices
    (f,) = notice.failures()
    assert out.filed.stored == [] and notice.mail_from == SENDER and notice.kind == "failed"
    assert (f.recipient, f.status, f.diagnostic) == (USER, "5.7.1", "smtp; 550 5.7.1 Not interested")
    for kw in ({"auth": {}}, {"mail_from": ""}):
        out = w.deliver(**kw)
        assert out.filed.stored == ["INBOX"] and "reject not sent" in out.filed.notes[0]
    assert w.deliver(spam=SpamVerdict("add header", 9.0)).filed.stored == ["Junk"]  # the managed rule first
    assert len(w.outlet.notices) == 1


def vacation_script(extra: str = "") -> str:
    return f'require "vacation"; vacation :days 2 {extra} :subject "Away" "I am away until Monday.";'


def test_vacation_replies_once_per_sender_per_period(w):
    w.script(vacation_script())
    w.deliver()
    (env,) = w.outlet.submitted
    reply = w.outlet.spool[env.s3_key]
    assert env.mail_from == "" and env.rcpt_to == (SENDER,) and env.auth_user == USER
    assert b"Auto-Submitted: auto-replied" in reply and b"Subject: Away" in reply
    assert b"In-Reply-To: <m1@example.org>" in reply and f"To: {SENDER}".encode() in reply
    assert b"I am away until Monday." in reply and f"From: {USER}".encode() in reply
    w.deliver()  # same sender within two days: no reply
    assert len(w.outlet.submitted) == 1
    w.deliver(mail_from="other@example.org", raw=raw_message(From="other@example.org"))
    assert len(w.outlet.submitted) == 2  # another sender gets one
    w.now += 2 * 86400 + 1
    w.deliver()
    assert len(w.outlet.submitted) == 3  # the period has passed


def test_vacation_retry_of_the_same_delivery_sends_once(w):
    w.script(vacation_script())
    w.deliver(queue_id="same")
    w.deliver(queue_id="same")
    assert len(w.outlet.submitted) == 1


@pytest.mark.parametrize("kw, why", [
    ({"mail_from": ""}, "null sender"),
    ({"auth": {}}, "sender not verified"),
    ({"auth": AuthFacts(dkim_aligned=True).to_dict(), "raw": raw_message(List_Id="<x.lists.example.org>")},
     "mailing list"),
    ({"raw": raw_message(Precedence="bulk")}, "Precedence: bulk"),
    ({"raw": raw_message(Auto_Submitted="auto-generated")}, "Auto-Submitted"),
    ({"mail_from": "owner-list@example.org"}, "automatic address"),
    ({"mail_from": "MAILER-DAEMON@example.org"}, "automatic address"),
    ({"mail_from": USER}, "sender is the user"),
    ({"raw": raw_message(To="someone@example.org")}, "not named in To/Cc/Bcc"),
])
def test_vacation_never_answers(w, kw, why):
    w.script(vacation_script())
    out = w.deliver(**kw)
    assert w.outlet.submitted == [] and any(why in n for n in out.filed.notes), out.filed.notes


def test_vacation_never_answers_spam(w):
    # a user script that tests spamtest itself gets spam (the managed Junk rule steps aside): still no reply
    w.script('require ["vacation", "spamtest"]; if spamtest :is "99" { stop; } vacation "away";')
    out = w.deliver(spam=SpamVerdict("add header", 8.0))
    assert out.filed.stored == ["INBOX"] and w.outlet.submitted == []
    assert any("marked spam" in n for n in out.filed.notes)


def test_vacation_addresses_and_aliases(w):
    w.script(vacation_script(':addresses ["boss@corp.example"]'))
    w.deliver(raw=raw_message(To="alias@example.test"))  # an alias of the user
    w.deliver(raw=raw_message(To="boss@corp.example", From="b@example.org"), mail_from="b@example.org")
    assert len(w.outlet.submitted) == 2


def test_our_own_users_submissions_are_answered(w):
    w.script(vacation_script())
    w.deliver(auth=AuthFacts(submitted=True).to_dict(), mail_from="colleague@example.test",
              raw=raw_message(From="colleague@example.test"))
    assert len(w.outlet.submitted) == 1


def test_auto_submitted_no_is_answered(w):
    w.script(vacation_script())
    w.deliver(raw=raw_message(Auto_Submitted="no"))
    assert len(w.outlet.submitted) == 1


# --- the managed script ---------------------------------------------------------------------------------
def test_spam_and_quarantine_go_to_junk_before_the_user_script(w):
    w.script('require "fileinto"; fileinto "Work";')
    mailboxes.ensure_defaults(w.store, USER)
    mailboxes.create(w.store, USER, "Work")
    assert w.deliver(spam=SpamVerdict("add header", 9.0)).filed.stored == ["Junk"]
    assert w.deliver(auth=AuthFacts(spf="fail", quarantine=True).to_dict()).filed.stored == ["Junk"]
    assert w.deliver(spam=SpamVerdict("no action", 1.0)).filed.stored == ["Work"]


def test_a_user_script_testing_spamtest_decides_itself(w):
    w.script('require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"];\n'
             'if spamtest :value "ge" :comparator "i;ascii-numeric" "9" { discard; stop; }')
    assert w.deliver(spam=SpamVerdict("add header", 9.0)).filed.stored == ["INBOX"]
    assert w.deliver(spam=SpamVerdict("reject", 20.0)).filed.stored == []


def test_allow_and_block_lists(w):
    m = Managed(w.repo)
    m.allow(USER, "@example.org")
    assert w.deliver(spam=SpamVerdict("add header", 9.0)).filed.stored == ["INBOX"]
    assert w.deliver(auth=AuthFacts(quarantine=True).to_dict()).filed.stored == ["Junk"]  # DMARC still applies
    m.block(USER, SENDER)
    assert w.deliver().filed.stored == ["Junk"]


def test_managed_vacation_and_filters(w):
    m = Managed(w.repo)
    m.set_vacation(USER, VacationSettings(subject="Out", text="Back soon.", to_date=w.now + 86400))
    m.set_filters(USER, [Filter("subject", "Hello", "Greetings")])
    out = w.deliver()
    assert out.filed.stored == ["Greetings"] and len(w.outlet.submitted) == 1
    w.now += 2 * 86400  # past the vacation's end date
    w.deliver(mail_from="new@example.org", raw=raw_message(From="new@example.org"))
    assert len(w.outlet.submitted) == 1


def test_user_vacation_replaces_the_managed_one(w):
    Managed(w.repo).set_vacation(USER, VacationSettings(subject="Managed", text="x"))
    w.script('require "vacation"; vacation :subject "Mine" "y";')
    w.deliver()
    (env,) = w.outlet.submitted
    assert b"Subject: Mine" in w.outlet.spool[env.s3_key]


def test_body_test_reads_the_spool_only_when_needed(w):
    reads = []
    w.sieve.body_reader = lambda key, limit: reads.append(key) or w.outlet.spool[key][:limit]
    w.script('require ["body", "fileinto"]; if body :contains "there" { fileinto "Junk"; }')
    assert w.deliver().filed.stored == ["Junk"] and len(reads) == 1
    w.script('if header :contains "subject" "x" { discard; }')
    w.deliver()
    assert len(reads) == 1


OUR_HAM_BLOCK = "X-Spam-Action: no action\r\nX-Spam-Score: 0.40 / 15.00\r\nX-Spam-Flag: NO\r\n"
OUR_SPAM_BLOCK = "X-Spam-Action: add header\r\nX-Spam-Score: 9.00 / 15.00\r\nX-Spam-Flag: YES\r\n"
FORGED_SPAM = {"X_Spam_Status": "Yes, score=99.0 required=5.0", "X_Spam_Score": "99", "X_Spam_Flag": "YES"}
FORGED_HAM = {"X_Spam_Status": "No, score=-50.0", "X_Spam_Score": "-50", "X_Spam_Flag": "NO"}


def test_forged_x_spam_fields_below_our_block_change_nothing(w):
    """A sender's own X-Spam-* fields (below our prepended block) are invisible to Sieve's header tests,
    to spamtest and to filing: only the MX's verdict (the StoreJob's) and our block count."""
    mailboxes.ensure_defaults(w.store, USER)
    for name in ("Forged", "Flagged"):
        mailboxes.create(w.store, USER, name)
    w.script('require ["fileinto", "spamtest", "relational", "comparator-i;ascii-numeric"];\n'
             'if header :contains "X-Spam-Status" "Yes" { fileinto "Forged"; stop; }\n'
             'if header :value "ge" :comparator "i;ascii-numeric" "X-Spam-Score" "50" { fileinto "Forged"; stop; }\n'
             'if header :is "X-Spam-Flag" "YES" { fileinto "Flagged"; stop; }\n'
             'if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto "Junk"; stop; }')
    ham = SpamVerdict("no action", 0.4)
    out = w.deliver(raw_message(**FORGED_SPAM), spam=ham, trace=OUR_HAM_BLOCK)
    assert out.filed.stored == ["INBOX"]  # neither the forged status, score nor flag was read
    stored = w.box("INBOX")[0]
    assert b"X-Spam-Status: Yes, score=99.0" in stored  # the received bytes are kept, never rewritten
    assert stored.index(b"X-Spam-Flag: NO") < stored.index(b"X-Spam-Flag: YES")  # ours on top
    # Our own block is read: its flag is what a header test sees.
    assert w.deliver(raw_message(**FORGED_HAM), spam=SpamVerdict("add header", 9.0),
                     trace=OUR_SPAM_BLOCK).filed.stored == ["Flagged"]


def test_forged_ham_fields_do_not_keep_spam_out_of_junk(w):
    out = w.deliver(raw_message(**FORGED_HAM), spam=SpamVerdict("add header", 9.0), trace=OUR_SPAM_BLOCK)
    assert out.filed.stored == ["Junk"]  # the managed rule reads the verdict, not the message
    out = w.deliver(raw_message(**FORGED_SPAM), spam=SpamVerdict("no action", 0.4), trace=OUR_HAM_BLOCK)
    assert out.filed.stored == ["INBOX"]


def test_the_verdict_is_saved_with_the_message_and_kept_by_copy(w):
    w.deliver(spam=SpamVerdict("add header", 9.0, symbols=("BAYES_SPAM", "MISSING_DATE")))
    w.deliver(spam=SpamVerdict("no action", 0.4, symbols=("ARC_NA",)))
    w.deliver()  # the filter did not run: "unchecked", not "clean"
    (junk,) = w.store.list_messages(w.store.get_mailbox(USER, "Junk"))
    inbox = list(w.store.list_messages(w.store.get_mailbox(USER, "INBOX")))
    assert (junk.spam.action, junk.spam.score, junk.spam.symbols) == ("add header", 9.0, ("BAYES_SPAM", "MISSING_DATE"))
    assert junk.spam.spamtest() == 4 and "$Junk" in junk.flags  # IMAP $Junk (RFC 9051 §2.3.2)
    assert keywords(junk.flags) == {"$junk": True}  # JMAP's Email keywords (RFC 8621 §4.1.1)
    assert [(m.spam.action, "$Junk" in m.flags) for m in inbox] == [("no action", False), ("unchecked", False)]
    assert inbox[1].spam.spamtest() == 0
    _, pairs = w.store.copy(w.store.get_mailbox(USER, "Junk"), [junk], "INBOX")
    (copied,) = w.store.get_messages(w.store.get_mailbox(USER, "INBOX"), [pairs[0][1]])
    assert copied.spam == junk.spam
    light = list(w.store.list_messages(w.store.get_mailbox(USER, "Junk"), light=True))
    assert light[0].spam == junk.spam
    w.store.append(USER, "INBOX", raw_message())  # IMAP APPEND, JMAP import: no verdict recorded
    assert list(w.store.list_messages(w.store.get_mailbox(USER, "INBOX")))[-1].spam is None
