"""End-to-end fixtures: the same embedded stack ``make run`` starts, on ephemeral ports.

``stack`` (session): a started :class:`postern_local.stack.LocalStack` with
every listener on 127.0.0.1:0 and the pollers NOT running in the background:
tests send mail, call ``stack.drain()`` (pumps every queue through the real
Lambda handlers until all are empty) and then read. Ports:
``stack.smtp_port``, ``stack.submission_port``, ``stack.imap_port``,
``stack.pop3_port`` ... (``stack.ports`` has them all). The stack's
``directory``, ``store``, ``settings`` and ``clients`` are the DynamoDB/S3
ones the handlers and the gateway use.

``new_user`` (function): a fresh user in a fresh domain for each test, so
tests sharing the session stack never see each other's mail; returns
``(address, password)``. ``new_domain`` gives just a domain.

``hostile`` (module): the gateway in its own process under RLIMIT_AS with a
canary client probing it (:class:`postern_local.liveness.HostileGateway`):
``hostile.measure(attack).check()`` asserts the liveness ceilings.
``hostile_gateway(**env)`` (function) starts another one with extra settings.

E2E tests are moved to the end of the run (``pytest_collection_modifyitems``):
the stack sets process environment variables and shares moto's in-process
backends, which unit tests' ``mock_aws`` resets; running it last keeps the
two apart. It restores the environment when the session ends.
"""

from __future__ import annotations

import itertools
import secrets

import pytest

_E2E_DIR = __file__.rsplit("/", 1)[0]


def pytest_collection_modifyitems(session, config, items):
    e2e = [i for i in items if str(i.fspath).startswith(_E2E_DIR)]
    if not e2e:
        return
    for item in e2e:
        item.add_marker(pytest.mark.e2e)
    others = [i for i in items if not str(i.fspath).startswith(_E2E_DIR)]
    items[:] = others + e2e


@pytest.fixture(scope="session")
def fake_dns():
    """A loopback DNS server the stack's deliver function resolves through (outbound tests add records)."""
    from postern_local.fakedns import FakeDNS

    with FakeDNS() as d:
        yield d


@pytest.fixture(scope="session")
def fake_mx():
    """The smarthost all outbound mail goes through (127.0.0.1, port 0; replies scripted per test)."""
    from postern_local.fakemx import FakeMX

    with FakeMX("smarthost.remote.test") as m:
        yield m


@pytest.fixture(scope="session")
def stack(fake_dns, fake_mx):
    from postern_local.stack import LocalStack

    outbound = {  # the smarthost transport to fake_mx (mx needs the deliver VPC option: AWS blocks port 25)
        "POSTERN_OUTBOUND_TRANSPORT": "smarthost",
        "POSTERN_SMARTHOST": f"127.0.0.1:{fake_mx.port}",
        "POSTERN_SMARTHOST_TLS": "none",
        "POSTERN_DNS_NAMESERVERS": fake_dns.nameserver,
        "POSTERN_DNS_TIMEOUT": "1",
        "POSTERN_OUTBOUND_TIMEOUT": "1",
        "POSTERN_MTA_STS": "false",
    }
    s = LocalStack(outbound, ephemeral_ports=True, background=False).start()
    # Build every client now: boto3 reads AWS_ENDPOINT_URL when a client is first built, and a stack
    # nested in this one (test_local_runtime's, test_outbound_ses's) points it at itself while it runs,
    # so a client first used then would keep the nested stack's endpoint after it stopped.
    from postern.aws import _SERVICES

    for clients in (s.clients, s.gateway_clients):
        for name in _SERVICES:
            clients.client(name)
    try:
        yield s
    finally:
        s.stop()


_seq = itertools.count(1)


@pytest.fixture
def new_domain(stack):
    def make() -> str:
        d = f"d{next(_seq)}-{secrets.token_hex(3)}.test"
        stack.directory.add_domain(d)
        return d

    return make


@pytest.fixture
def new_user(stack, new_domain):
    def make(local: str = "user", domain: str | None = None, quota: int = 0) -> tuple[str, str]:
        d = domain or new_domain()
        address = f"{local}@{d}"
        password = secrets.token_urlsafe(9)
        stack.directory.add_user(address, password, quota=quota)
        return address, password

    return make


def _canary_account(stack) -> tuple[str, str]:
    domain = f"canary{next(_seq)}-{secrets.token_hex(3)}.test"
    stack.directory.add_domain(domain)
    address, password = f"canary@{domain}", secrets.token_urlsafe(9)
    stack.directory.add_user(address, password)
    stack.store.ensure_mailboxes(address)
    return address, password


@pytest.fixture(scope="module")
def hostile(stack):
    """The gateway under attack: own process, RLIMIT_AS, canary running (postern_local.liveness)."""
    from postern_local.liveness import HostileGateway

    g = HostileGateway(stack, *_canary_account(stack)).start()
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture(autouse=True)
def _hostile_running(request):
    """A test that killed the module's hostile gateway fails alone; the next one gets a fresh one."""
    if "hostile" in request.fixturenames:
        request.getfixturevalue("hostile").ensure_running()


@pytest.fixture
def hostile_gateway(stack):
    """Factory: ``hostile_gateway(POSTERN_X="1")`` -> a started HostileGateway with those settings."""
    from postern_local.liveness import HostileGateway

    started = []

    def make(**env: str):
        g = HostileGateway(stack, *_canary_account(stack), extra_env=env).start()
        started.append(g)
        return g

    yield make
    for g in started:
        g.stop()
