"""postern.spam (rspamd's reply read, the one-reply-for-all decision, per-recipient verdicts, the X-Spam
block, forged copies ignored), the directory's thresholds (user, domain, defaults), ``postern user|domain
spam`` and the router giving each recipient their own thresholds, on moto."""

from __future__ import annotations

import io

import pytest

from postern import spam
from postern.cli import main
from postern.envelope import Envelope
from postern.pipeline.router import plan
from postern.spam import ACCEPT, REJECT, TEMPFAIL, ScanResult, Thresholds
from postern.verdicts import SpamVerdict


def reply(action="no action", score=1.0, required=15.0, symbols=None, **extra) -> dict:
    return {"action": action, "score": score, "required_score": required,
            "symbols": symbols if symbols is not None else {"R_SPF_NA": {"score": 0.5}, "BAYES_HAM": {"score": -3.0}},
            **extra}


def test_reads_rspamds_reply():
    r = ScanResult.from_rspamd(reply(messages={"smtp_message": "Gtube pattern"},
                                     symbols={"bad name!": {"score": 9}, "NAN": {"score": float("nan")},
                                              "A": {"score": 2}, "B": {"score": -3.0}}))
    assert (r.action, r.score, r.required, r.message) == ("no action", 1.0, 15.0, "Gtube pattern")
    assert r.symbols == (("B", -3.0), ("A", 2.0), ("NAN", 0.0))  # by weight; bad names dropped, NaN -> 0


def test_a_virus_is_the_antivirus_modules_symbol():
    virus = ScanResult.from_rspamd(reply("reject", 3.0, symbols={"CLAM_VIRUS": {"score": 0.0}}))
    failed = ScanResult.from_rspamd(reply("no action", 1.0, symbols={"CLAM_VIRUS_FAIL": {"score": 0.0}}))
    assert virus.virus and virus.forced_reject and spam.session_decision(virus, [Thresholds(6, 100)]) is REJECT
    assert not failed.virus and spam.session_decision(failed, [Thresholds()]) is ACCEPT


@pytest.mark.parametrize("bad", [None, [], {}, {"action": "explode"}, reply(score=float("inf")),
                                 reply(score="many")])
def test_refuses_what_is_not_rspamds_reply(bad):
    with pytest.raises((ValueError, TypeError)):
        ScanResult.from_rspamd(bad)


LOW, HIGH = Thresholds(6, 15), Thresholds(10, 50)
DECISIONS = [  # action, score, required, recipients, decision
    ("reject", 20, 15, [LOW], REJECT),
    ("reject", 20, 15, [LOW, HIGH], ACCEPT),  # one recipient's threshold keeps it: one reply serves all
    ("reject", 60, 15, [LOW, HIGH], REJECT),
    ("reject", 3, 15, [LOW, HIGH], REJECT),  # below rspamd's own score: a module forced it (a virus)
    ("add header", 16, 15, [LOW], REJECT),  # our threshold, not rspamd's action, decides
    ("no action", 2, 15, [LOW], ACCEPT),
    ("add header", 7, 15, [LOW, HIGH], ACCEPT),
    ("soft reject", 0, 15, [LOW], TEMPFAIL),
    ("greylist", 4, 15, [LOW], TEMPFAIL),
    ("reject", 20, 15, [], ACCEPT),
]


@pytest.mark.parametrize("action,score,required,recipients,decision", DECISIONS)
def test_one_decision_for_all_recipients(action, score, required, recipients, decision):
    result = ScanResult.from_rspamd(reply(action, score, required))
    assert spam.session_decision(result, recipients) is decision


def test_verdict_per_recipient_feeds_spamtest():
    env = spam.envelope_spam(ScanResult.from_rspamd(reply("add header", 8.0)))
    assert env == {"action": "add header", "score": 8.0, "symbols": ["BAYES_HAM", "R_SPF_NA"], "forced": False}
    low, high = (SpamVerdict.from_dict(spam.for_recipient(env, t)) for t in (LOW, HIGH))
    assert (low.junk_score, low.reject_score, high.junk_score) == (6, 15, 10)
    assert low.spamtest() > 1 and low.is_spam  # above 6: the managed rule files it in Junk
    assert high.spamtest() == 1  # below this user's 10: INBOX
    forced = spam.envelope_spam(ScanResult.from_rspamd(reply("reject", 3.0)))
    assert SpamVerdict.from_dict(spam.for_recipient(forced, HIGH)).spamtest() == 10
    unchecked = spam.envelope_spam(None)
    assert unchecked == {"action": "unchecked"}
    assert SpamVerdict.from_dict(spam.for_recipient(unchecked, LOW)).spamtest() == 0


def test_header_block_is_crlf_folded_fields():
    symbols = {f"SYMBOL_NUMBER_{i}": {"score": float(i)} for i in range(40)}
    block = spam.header_block(ScanResult.from_rspamd(reply("add header", 7.25, symbols=symbols)))
    assert block.startswith("X-Spam-Action: add header\r\nX-Spam-Score: 7.25 / 15.00\r\nX-Spam-Flag: YES\r\n")
    assert block.endswith("\r\n") and "\n" not in block.replace("\r\n", "")
    assert all(len(line) <= 78 for line in block.split("\r\n"))
    assert block.count("SYMBOL_NUMBER_") == 40
    from postern.mail.header import Header

    h = Header(block.encode() + b"Subject: x\r\n\r\n")
    assert h.texts(b"x-spam-flag") == ["YES"] and h.texts(b"subject") == ["x"]


def test_forged_fields_are_not_read():
    header = (b"X-Spam-Flag: NO\r\nSubject: hi\r\nx-spam-score: -100\r\n  folded on\r\n\tand on\r\n"
              b"X-Spammy: kept\r\nTo: a@b\r\n\r\n")
    assert spam.strip_forged(header) == b"Subject: hi\r\nX-Spammy: kept\r\nTo: a@b\r\n\r\n"
    assert spam.strip_forged(b"Subject: X-Spam-Flag: YES\r\n\r\n") == b"Subject: X-Spam-Flag: YES\r\n\r\n"


def test_forged_field_does_not_reach_sieve():
    """A sender's own X-Spam-Flag: YES does not match a user's header test; ours (the prefix) does."""
    from postern.sieve.delivery import SieveDelivery

    header = b"X-Spam-Flag: YES\r\nSubject: hi\r\n\r\n"

    class Job:
        mail_from, original_recipient, user, s3_key, size = "a@b.test", "", "u@x.test", "k", 10
        auth, spam = {}, {}

    d = SieveDelivery(None, None, hostname="mx.test")
    forged = d.context(Job, header, None, b"", None, 0.0)
    assert forged.message.header.get_all(b"x-spam-flag") == []
    ours = d.context(Job, header, None, b"X-Spam-Flag: NO\r\n", None, 0.0)
    assert [v.strip() for v in ours.message.header.get_all(b"x-spam-flag")] == [b"NO"]


@pytest.fixture
def run(aws, capsys, directory):
    settings, clients, _ = aws
    directory.add_domain("example.test")
    directory.add_user("alice@example.test", "pw")
    directory.add_user("bob@example.test", "pw")

    def go(*argv):
        out = io.StringIO()
        rc = main(list(argv), settings=settings, clients=clients, out=out)
        return rc, out.getvalue(), capsys.readouterr().err

    return go


def test_thresholds_user_then_domain_then_default(run, directory):
    assert directory.spam_thresholds("alice@example.test") == Thresholds(6.0, 15.0)
    assert run("domain", "spam", "example.test", "--junk", "5", "--reject", "12")[0] == 0
    assert run("user", "spam", "alice@example.test", "--reject", "30") == (
        0, "alice@example.test\tjunk 5.0 (domain)\treject 30.0\n", "")
    assert directory.spam_thresholds("alice@example.test") == Thresholds(5.0, 30.0)
    assert directory.spam_thresholds("bob@example.test") == Thresholds(5.0, 12.0)
    assert directory.spam_thresholds("alice+tag@example.test") == Thresholds(5.0, 30.0)
    directory.set_catchall("example.test", "bob@example.test")  # rewriting the domain item keeps them
    assert directory.spam_thresholds("nobody@example.test") == Thresholds(5.0, 12.0)
    assert run("domain", "spam", "example.test")[1] == "example.test\tjunk 5.0\treject 12.0\n"
    assert run("user", "spam", "alice@example.test", "--clear")[0] == 0
    assert directory.spam_thresholds("alice@example.test") == Thresholds(5.0, 12.0)
    directory.set_password("bob@example.test", "new")  # other writes keep them too
    run("user", "spam", "bob@example.test", "--junk", "1")
    directory.set_quota("bob@example.test", 10)
    assert directory.spam_thresholds("bob@example.test") == Thresholds(1.0, 12.0)


@pytest.mark.parametrize("argv,rc", [
    (("user", "spam", "alice@example.test", "--junk", "20"), 2),  # above the reject score (15)
    (("user", "spam", "alice@example.test", "--junk", "nan"), 2),
    (("user", "spam", "alice@example.test", "--reject", "1e9"), 2),
    (("user", "spam", "carol@example.test", "--junk", "1"), 1),
    (("domain", "spam", "nowhere.test"), 1),
])
def test_cli_refuses(run, directory, argv, rc):
    got, _, err = run(*argv)
    assert got == rc and err
    assert directory.spam_thresholds("alice@example.test") == Thresholds()


def test_router_gives_each_recipient_their_thresholds(run, directory):
    run("user", "spam", "bob@example.test", "--junk", "9", "--reject", "40")
    verdict = spam.envelope_spam(ScanResult.from_rspamd(reply("add header", 8.0)))
    env = Envelope(queue_id="q1", s3_key="spool/q1", size=10, received_at=0.0, mail_from="x@remote.test",
                   rcpt_to=("alice@example.test", "bob@example.test"), spam=verdict)
    jobs = {j.user: SpamVerdict.from_dict(j.spam) for j in plan(env, directory).store}
    assert (jobs["alice@example.test"].junk_score, jobs["alice@example.test"].spamtest()) == (6.0, 3)
    assert (jobs["bob@example.test"].reject_score, jobs["bob@example.test"].spamtest()) == (40.0, 1)
    unchecked = Envelope(queue_id="q2", s3_key="spool/q2", size=10, received_at=0.0, mail_from="",
                         rcpt_to=("alice@example.test",),
                         spam=spam.envelope_spam(None))
    assert [j.spam for j in plan(unchecked, directory).store] == [{"action": "unchecked"}]


@pytest.mark.parametrize("source,dest,expected", [
    (("INBOX", None), ("Junk", "\\Junk"), True),
    (("Archive", None), ("Spam-renamed", "\\Junk"), True),  # the special-use flag counts, not the name
    (("Junk", "\\Junk"), ("INBOX", None), False),
    (("Junk", "\\Junk"), ("Trash", "\\Trash"), None),  # deleting spam is not "this is ham"
    (("Junk", "\\Junk"), ("Junk", "\\Junk"), None),
    (("INBOX", None), ("Archive", None), None),
])
def test_which_moves_teach_rspamd(source, dest, expected):
    from postern.store.base import MailboxInfo
    from postern.junk import lesson

    src, dst = (MailboxInfo("u@x.test", n, "id", 1, special_use=su) for n, su in (source, dest))
    assert lesson(src, dst) is expected
