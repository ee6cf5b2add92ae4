"""SRS (postern.srs): interoperable addresses, checked hashes and ages, and bounces routed back.

The vectors were produced by srslib 0.1.5 (libsrs2's scheme) with the same secret on the same
day; postern's own addresses reverse there too (checked when the module was written)."""

from __future__ import annotations

import pytest

from postern.directory import memory_directory
from postern.routing import route
from postern.srs import Srs, SrsError, from_settings

SECRET = b"s3cret"
DAY = 86400
NOW = 20794 * DAY + 3600  # day 20794: timestamp "J2" (20794 % 1024 = 314 = 9*32 + 26)
SRS0 = "SRS0=bsrF=J2=ext.test=alice@fwd.example"
SRS1 = "SRS1=AP6b=fwd.example==bsrF=J2=ext.test=alice@second.example"


@pytest.fixture
def srs():
    return Srs((SECRET,))


def test_forward_writes_what_libsrs2_writes(srs):
    assert srs.forward("alice@ext.test", "fwd.example", NOW) == SRS0
    assert srs.forward(SRS0, "second.example", NOW) == SRS1  # a second forwarder: SRS1
    # a third forwarder keeps the first forwarder and the opaque part, re-hashed for itself
    third = srs.forward(SRS1, "third.example", NOW)
    assert third.endswith("=fwd.example==bsrF=J2=ext.test=alice@third.example") and third.startswith("SRS1=")
    assert srs.reverse(third, NOW) == "SRS0=bsrF=J2=ext.test=alice@fwd.example"


def test_reverse(srs):
    assert srs.reverse(SRS0, NOW) == "alice@ext.test"
    assert srs.reverse(SRS1, NOW) == "SRS0=bsrF=J2=ext.test=alice@fwd.example"  # back to the first forwarder
    assert srs.reverse(SRS0.lower(), NOW) == "alice@ext.test"  # an MTA that lower-cased the local part


def test_null_sender_and_own_domain_are_not_rewritten(srs):
    assert srs.forward("", "fwd.example", NOW) == ""
    assert srs.forward("bob@fwd.example", "FWD.example", NOW) == "bob@fwd.example"


@pytest.mark.parametrize("address, why", [
    ("SRS0=AAAA=J2=ext.test=alice@fwd.example", "hash"),  # forged
    ("SRS0=bsrF=J3=ext.test=alice@fwd.example", "hash"),  # timestamp changed
    ("SRS0=bsrF=J2=ext.test=mallory@fwd.example", "hash"),  # user changed
    ("SRS0=bsrF=J2=ext.test@fwd.example", "malformed"),
    ("SRS0=bsrF=!!=ext.test=alice@fwd.example", "hash"),
    ("SRS1=AAAA=fwd.example==bsrF=J2=ext.test=alice@second.example", "hash"),
    ("SRS1=AP6b=fwd.example@second.example", "malformed"),
    ("alice@fwd.example", "not an SRS"),
])
def test_forged_or_malformed_addresses_are_refused(srs, address, why):
    with pytest.raises(SrsError, match=why):
        srs.reverse(address, NOW)


def test_age_is_checked_and_future_timestamps_count_as_forged(srs):
    assert srs.reverse(SRS0, NOW + 21 * DAY) == "alice@ext.test"
    with pytest.raises(SrsError, match="expired"):
        srs.reverse(SRS0, NOW + 22 * DAY)
    with pytest.raises(SrsError, match="expired"):
        srs.reverse(SRS0, NOW - 2 * DAY)


def test_rotation_the_first_secret_signs_every_one_verifies():
    rotated = Srs((b"newer", SECRET))
    assert rotated.reverse(SRS0, NOW) == "alice@ext.test"  # made with the old secret
    assert rotated.forward("alice@ext.test", "fwd.example", NOW) != SRS0
    with pytest.raises(SrsError):
        Srs((b"newer",)).reverse(SRS0, NOW)
    with pytest.raises(SrsError, match="no SRS secret"):
        Srs(())


def test_secret_from_secrets_manager_or_settings(aws):
    settings, clients, _ = aws
    clients.secrets.create_secret(Name="postern/t/srs", SecretString='{"secrets": ["s3cret", "older"]}')
    s = from_settings(settings.replace(srs_secret_id="postern/t/srs"), clients)
    assert s.secrets == (b"s3cret", b"older") and s.reverse(SRS0, NOW) == "alice@ext.test"
    clients.secrets.create_secret(Name="postern/t/srs2", SecretString='{"secret": "generated"}')  # the template's
    assert from_settings(settings.replace(srs_secret_id="postern/t/srs2"), clients).secrets == (b"generated",)
    assert from_settings(settings.replace(srs_secret=("s3cret",)), clients).secrets == (b"s3cret",)


def test_a_bounce_to_our_srs_address_is_routed_to_the_original_sender(srs, monkeypatch):
    from postern import clock

    d = memory_directory()
    d.add_domain("fwd.example")
    monkeypatch.setattr(clock, "now", lambda: NOW)
    decision = route([SRS0], d, allow_remote=False, srs=srs)  # MAIL FROM:<> from anywhere
    assert decision.failed == [] and decision.local == []
    (remote,) = decision.remote["ext.test"]
    assert (remote.recipient, remote.original_recipient) == ("alice@ext.test", SRS0)
    # a long SRS local part (over 64 octets) is fine: it never goes through the mailbox parser
    long_one = srs.forward("a.very.long.local.part.of.someone@subdomain.of.a.long.domain.example", "fwd.example")
    assert len(long_one.split("@")[0]) > 64
    assert route([long_one], d, allow_remote=False, srs=srs).remote
    forged = route(["SRS0=AAAA=J2=ext.test=alice@fwd.example"], d, allow_remote=False, srs=srs)
    assert [f.status for f in forged.failed] == ["5.1.1"] and not forged.remote
    assert route([SRS0], d, allow_remote=False, srs=None).failed  # no SRS configured: no such user
    other = route(["SRS0=bsrF=J2=ext.test=alice@elsewhere.example"], d, allow_remote=False, srs=srs)
    assert [f.status for f in other.failed] == ["5.7.1"]  # not our domain: a relay attempt
