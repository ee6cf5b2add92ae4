"""postmaster@ and abuse@ of every local domain (issue 11 finding 8; RFC 5321 §4.5.1, RFC 2142).

They resolve in routing to the directory's admin address (POSTERN_ADMIN_ADDRESS), not as items
per domain: a domain added after the setting has them too. An alias or a user of that name wins;
the catch-all does not take them; without an admin address they do not exist (5.1.1).
"""

from __future__ import annotations

import pytest

from postern.directory import memory_directory
from postern.routing import accepts, route

ADMIN = "ops@example.test"


@pytest.fixture
def directory():
    d = memory_directory(admin_address=ADMIN)
    d.add_domain("example.test")
    d.add_user(ADMIN, "pw")
    d.add_domain("own.test")
    d.add_user("pm@own.test", "pw")
    d.add_alias("postmaster@own.test", ["pm@own.test"])  # overrides the admin for this domain
    d.add_domain("catch.test")
    d.add_user("sink@catch.test", "pw")
    d.set_catchall("catch.test", "sink@catch.test")
    return d


def local(decision):
    return [(d.user, d.original_recipient) for d in decision.local]


@pytest.mark.parametrize("rcpt", ["postmaster@example.test", "PostMaster@Example.TEST", "abuse@example.test",
                                  "postmaster+bounces@example.test", "ABUSE@catch.test"])
def test_role_accounts_go_to_the_admin(directory, rcpt):
    assert local(route([rcpt], directory, allow_remote=False)) == [(ADMIN, rcpt)]


def test_a_domain_added_later_has_them(directory):
    directory.add_domain("new.test")
    assert accepts("postmaster@new.test", directory) and accepts("abuse@new.test", directory)
    assert not accepts("hostmaster@new.test", directory)  # only the two role accounts
    view = directory.prefetched(["postmaster@new.test"])  # the router's batched view keeps the rule
    assert local(route(["postmaster@new.test"], view, allow_remote=False)) == [(ADMIN, "postmaster@new.test")]


def test_an_alias_or_user_of_that_name_overrides(directory):
    assert local(route(["postmaster@own.test"], directory)) == [("pm@own.test", "postmaster@own.test")]
    directory.add_user("abuse@own.test", "pw")
    assert local(route(["abuse@own.test"], directory)) == [("abuse@own.test", "abuse@own.test")]


def test_a_remote_admin_is_forwarding_not_relaying():
    d = memory_directory(admin_address="noc@remote.example")
    d.add_domain("example.test")
    decision = route(["abuse@example.test"], d, allow_remote=False)
    assert decision.failed == [] and [r.recipient for r in decision.remote["remote.example"]] == ["noc@remote.example"]


def test_without_an_admin_they_do_not_exist():
    d = memory_directory()
    d.add_domain("example.test")
    assert [f.status for f in route(["postmaster@example.test"], d).failed] == ["5.1.1"]


def test_an_admin_that_is_itself_a_role_account_is_a_loop_not_a_hang():
    d = memory_directory(admin_address="postmaster@example.test")
    d.add_domain("example.test")
    assert [f.status for f in route(["abuse@example.test"], d).failed] == ["5.4.6"]


def test_reports_go_to_the_reports_function_once_per_domain(directory):
    from postern.envelope import Envelope
    from postern.pipeline.router import plan

    d = route(["reports@example.test", "Reports@EXAMPLE.test", "reports@catch.test", "ops@example.test"], directory,
              allow_remote=False)
    assert [(r.domain, r.original_recipient) for r in d.reports] == [
        ("example.test", "reports@example.test"), ("catch.test", "reports@catch.test")]
    assert local(d) == [(ADMIN, "ops@example.test")] and not d.failed  # the catch-all does not take reports@
    env = Envelope(queue_id="q1", s3_key="spool/q1", mail_from="noreply@reporter.test",
                   rcpt_to=("reports@example.test",), received_at=1.0, size=10)
    (job,) = plan(env, directory).reports
    assert (job.domain, job.s3_key, job.queue_id) == ("example.test", "spool/q1", "q1")
    directory.add_user("reports@own.test", "pw")  # a user of that name wins, as for postmaster@
    assert local(route(["reports@own.test"], directory, allow_remote=False)) == [("reports@own.test", "reports@own.test")]
