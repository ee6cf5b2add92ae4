"""The ``postern`` admin command, against the template's resources on moto."""

from __future__ import annotations

import io
import json

import pytest

from postern.cli import EXIT_REFUSED, EXIT_TEMPFAIL, EXIT_USAGE, main, parse_size


@pytest.fixture
def run(aws, capsys):
    settings, clients, _ = aws

    settings = settings.replace(outbound_transport="smarthost")  # `domain add` with ses: test_domain_add_with_ses

    def go(*argv, stdin: str = "", settings_=None):
        out = io.StringIO()
        rc = main(list(argv), settings=settings_ or settings, clients=clients, out=out, stdin=io.StringIO(stdin))
        return rc, out.getvalue(), capsys.readouterr().err

    return go


def test_domain_user_alias_lifecycle(run, directory, aws):
    assert run("domain", "add", "Example.test")[0] == 0
    assert run("domain", "list") == (0, "example.test\n", "")
    assert run("user", "add", "alice@example.test", "--password-stdin", stdin="correct horse\n")[0] == 0
    assert directory.authenticate("alice@example.test", "correct horse") is not None
    from postern.store.dynamo import DynamoMailStore

    settings, clients, _ = aws
    names = {mb.name for mb in DynamoMailStore(settings, clients).list_mailboxes("alice@example.test")}
    assert names == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    assert run("user", "add", "bob@example.test", "--password-stdin", "--quota", "2M", stdin="pw\n")[0] == 0
    rc, out, _ = run("user", "list")
    assert rc == 0
    assert out.splitlines() == ["alice@example.test\tquota 1.0 GiB (default)", "bob@example.test\tquota 2.0 MiB"]
    rc, out, _ = run("user", "list", "example.test", "--usage")
    assert "used 0 B" in out
    assert run("user", "passwd", "alice@example.test", "--password-stdin", stdin="battery staple\n")[0] == 0
    assert directory.authenticate("alice@example.test", "battery staple") is not None
    assert run("alias", "add", "team@example.test", "alice@example.test", "bob@example.test")[0] == 0
    assert run("alias", "list") == (0, "team@example.test\t-> alice@example.test, bob@example.test\n", "")
    assert run("domain", "catchall", "example.test", "alice@example.test")[0] == 0
    assert run("domain", "catchall", "example.test")[1] == "alice@example.test\n"
    assert run("domain", "list")[1] == "example.test\tcatch-all -> alice@example.test\n"
    assert run("domain", "catchall", "example.test", "--clear")[0] == 0
    assert run("domain", "catchall", "example.test")[1] == "(none)\n"
    assert run("alias", "remove", "team@example.test")[0] == 0
    assert run("user", "remove", "bob@example.test")[0] == 0
    assert run("-v", "user", "remove", "alice@example.test")[1] == "removed user alice@example.test (stored mail is kept)\n"
    assert run("domain", "remove", "example.test")[0] == 0
    assert run("domain", "list") == (0, "", "")


ERRORS = [
    # (argv, stdin, exit status, stderr)
    (("user", "add", "a@nowhere.test", "--password-stdin"), "pw\n", EXIT_REFUSED,
     "postern: No such domain nowhere.test; add it first with 'postern domain add nowhere.test'\n"),
    (("user", "add", "a@example.test", "--password-stdin"), "pw\n", EXIT_REFUSED,
     "postern: User a@example.test already exists\n"),
    (("user", "add", "not-an-address", "--password-stdin"), "pw\n", EXIT_REFUSED,
     "postern: Invalid address 'not-an-address'\n"),
    (("user", "add", "b@example.test", "--password-stdin"), "", EXIT_USAGE, "postern: empty password\n"),
    # the one password policy (postern.credentials), as JMAP's Password/change applies it
    (("user", "add", "b@example.test", "--password-stdin"), "tab\there\n", EXIT_USAGE,
     "postern: a password may not contain control characters (mail clients could not send it)\n"),
    (("user", "passwd", "a@example.test", "--password-stdin"), "   \n", EXIT_USAGE,
     "postern: a password may not be only white space\n"),
    (("user", "passwd", "ghost@example.test", "--password-stdin"), "pw\n", EXIT_REFUSED,
     "postern: No such user ghost@example.test\n"),
    (("user", "remove", "ghost@example.test"), "", EXIT_REFUSED, "postern: No such user ghost@example.test\n"),
    (("user", "list", "nowhere.test"), "", EXIT_REFUSED, "postern: No such domain nowhere.test\n"),
    (("alias", "add", "a@example.test", "b@example.test"), "", EXIT_REFUSED, "postern: a@example.test is a user\n"),
    (("alias", "remove", "x@example.test"), "", EXIT_REFUSED, "postern: No such alias x@example.test\n"),
    (("domain", "remove", "example.test"), "", EXIT_REFUSED,
     "postern: Domain example.test still has 1 users/aliases (use --force)\n"),
    (("domain", "catchall", "example.test", "x@example.test", "--clear"), "", EXIT_USAGE,
     "postern: give a TARGET or --clear, not both\n"),
]


@pytest.mark.parametrize("argv,stdin,status,err", ERRORS, ids=[" ".join(e[0]) for e in ERRORS])
def test_errors_are_one_line_with_an_exit_status(run, argv, stdin, status, err):
    run("domain", "add", "example.test")
    run("user", "add", "a@example.test", "--password-stdin", stdin="pw\n")
    rc, out, stderr = run(*argv, stdin=stdin)
    assert (rc, out, stderr) == (status, "", err)


@pytest.mark.parametrize("argv", [(), ("user",), ("user", "add"), ("frobnicate",), ("user", "add", "x", "--quota", "lots")])
def test_usage_errors_exit_2(run, argv):
    with pytest.raises(SystemExit) as e:
        run(*argv)
    assert e.value.code == 2


@pytest.mark.parametrize("argv", [("--help",), ("domain", "--help"), ("user", "add", "--help"), ("alias", "add", "-h")])
def test_help_everywhere(run, argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    assert e.value.code == 0
    assert "usage: postern" in capsys.readouterr().out


def test_backend_failure_is_tempfail(run, aws):
    settings, _, _ = aws
    rc, _, err = run("domain", "list", settings_=settings.replace(directory_table="no-such-table"))
    assert rc == EXIT_TEMPFAIL and err.startswith("postern: ") and err.count("\n") == 1


def test_stack_outputs_name_the_resources(run, aws):
    from postern.config import Settings

    settings, clients, res = aws
    outputs = {"DirectoryTableName": res.tables["DirectoryTable"], "MailTableName": res.tables["MailTable"],
               "MailBucketName": res.buckets["MailBucket"], "InboundQueueUrl": res.queues["InboundQueue"]}
    template = {"Resources": {"Q": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
    clients.client("cloudformation").create_stack(StackName="mail", TemplateBody=json.dumps(template))
    wrong = Settings(outbound_transport="smarthost")  # default names: nothing exists under them
    assert run("--stack", "mail", "domain", "add", "example.test", settings_=wrong)[0] == 0
    assert run("--stack", "mail", "domain", "list", settings_=wrong)[1] == "example.test\n"
    assert run("domain", "list")[1] == "example.test\n"  # the same table, named by the environment
    rc, _, err = run("--stack", "nope", "domain", "list", settings_=wrong)
    assert rc == EXIT_TEMPFAIL and "cannot read stack nope" in err


def test_parse_size():
    assert [parse_size(x) for x in ("0", "1024", "1k", "2M", "3GiB", "1 g")] == [0, 1024, 1024, 2 * 1024**2,
                                                                             3 * 1024**3, 1024**3]


def test_domain_add_with_ses_creates_the_identity_and_prints_its_records(run, aws, directory):
    """moto has no SES MAIL FROM / feedback attributes: SES is stubbed, the directory is moto's."""
    from botocore.stub import ANY, Stubber

    settings, clients, _ = aws
    ses = settings.replace(outbound_transport="ses", ses_configuration_set="cs")
    with Stubber(clients.sesv2) as stub:
        stub.add_response("create_email_identity", {"DkimAttributes": {"Tokens": ["k1", "k2", "k3"]}},
                          {"EmailIdentity": "sesdomain.test", "ConfigurationSetName": "cs", "DkimSigningAttributes": ANY})
        stub.add_response("put_email_identity_mail_from_attributes", {}, {
            "EmailIdentity": "sesdomain.test", "MailFromDomain": "bounce.sesdomain.test", "BehaviorOnMxFailure": ANY})
        stub.add_response("put_email_identity_feedback_attributes", {})
        stub.add_response("get_email_identity", {  # `postern dns`'s view of it, printed with every other record
            "DkimAttributes": {"Tokens": ["k1", "k2", "k3"]}, "VerifiedForSendingStatus": False,
            "MailFromAttributes": {"MailFromDomain": "bounce.sesdomain.test", "MailFromDomainStatus": "PENDING",
                                   "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"}}, {"EmailIdentity": "sesdomain.test"})
        rc, out, err = run("domain", "add", "SESdomain.test", settings_=ses)
        stub.add_client_error("create_email_identity", "LimitExceededException", "too many identities")
        rc2, _, err2 = run("domain", "add", "other.test", settings_=ses)
    assert rc == 0 and err == ""
    assert "k1._domainkey.sesdomain.test. 3600 IN CNAME k1.dkim.amazonses.com." in " ".join(out.split())
    assert "bounce.sesdomain.test. 3600 IN MX 10 feedback-smtp.us-east-1.amazonses.com." in " ".join(out.split())
    assert "sesdomain.test. 3600 IN MX 10 mx.example.test." in " ".join(out.split())  # and every other record
    assert directory.is_local_domain("sesdomain.test")
    assert rc2 == EXIT_REFUSED and "added domain other.test, but not its SES identity" in err2
    assert "postern domain ses other.test" in err2 and directory.is_local_domain("other.test")
