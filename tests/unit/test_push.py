"""JMAP push's pieces without a socket: RFC 8887 messages (postern.jmap.websocket), the connection
registry and the fan-out (postern.push), the push function's authorizer (functions/push), the
feed's push step (functions/feed), and the template's WebSocket API and its grants."""

from __future__ import annotations

import json
import sys

import pytest

from postern import keys
from postern.feed import Notice
from postern.items import MemoryItems
from postern.jmap import session, websocket
from postern.jmap.account import account_id
from postern.push import CONNECTION_LIFETIME, Connection, Gone, Registry, fan_out, state_change
from postern_local.lambdas import FakeContext, function_specs, load_handler
from postern_local.template import load_template, resources_of_type


# --- RFC 8887 messages ------------------------------------------------------------------
def test_push_enable_and_disable_parse():
    assert websocket.parse('{"@type":"WebSocketPushEnable","dataTypes":null}') == websocket.PushEnable(None)
    assert websocket.parse('{"@type":"WebSocketPushEnable","dataTypes":["Email","Email","Mailbox"],'
                           '"pushState":"7"}') == websocket.PushEnable(("Email", "Mailbox"))
    assert websocket.parse('{"@type":"WebSocketPushEnable"}') == websocket.PushEnable(None)  # dataTypes omitted
    assert websocket.parse('{"@type":"WebSocketPushDisable"}') == websocket.PushDisable()


@pytest.mark.parametrize("payload,kind", [
    (b"\x00binary", "notJSON"), ("{", "notJSON"), ("\ud800", "notJSON"), ("[" * 100_000, "limit"),
    ("[" * 8000 + "]" * 8000, "notJSON"), ("3", "notRequest"), ('{"@type":"Nope"}', "notRequest"),
    ('{"@type":"WebSocketPushEnable","dataTypes":[1]}', "notRequest"),
    ('{"@type":"WebSocketPushEnable","dataTypes":' + json.dumps(["T"] * 33) + "}", "notRequest"),
    ('{"@type":"WebSocketPushEnable","pushState":5}', "notRequest"),
    ('{"@type":"Request","id":"r9","using":[],"methodCalls":[]}', "notRequest"),
])
def test_bad_messages_are_request_errors(payload, kind):
    with pytest.raises(websocket.RequestError) as err:
        websocket.parse(payload)
    reply = err.value.reply()
    assert reply["@type"] == "RequestError" and reply["type"] == f"urn:ietf:params:jmap:error:{kind}"
    assert reply["status"] == 400 and reply["detail"]
    if "r9" in str(payload):
        assert reply["requestId"] == "r9"  # RFC 8887 §4.3.4: the request's id comes back


def test_session_advertises_the_socket_only_when_configured():
    from postern.jmap.account import Account

    acct = Account(user="ann@example.test", store=None)
    assert websocket.WEBSOCKET not in session.build(acct, "https://w.example")["capabilities"]
    caps = session.build(acct, "https://w.example", "wss://abc.execute-api.eu-west-1.amazonaws.com/push")["capabilities"]
    assert caps[websocket.WEBSOCKET] == {"url": "wss://abc.execute-api.eu-west-1.amazonaws.com/push",
                                         "supportsPush": True}


# --- registry and fan-out -----------------------------------------------------------------
class Clock:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t


def test_registry_one_partition_per_account_with_a_ttl():
    items, clock = MemoryItems(), Clock()
    reg = Registry(items, clock)
    reg.connect("Ann@Example.test", "c1")
    reg.connect("ann@example.test", "c2")
    reg.connect("bob@example.test", "c3")
    assert items.get(keys.push_key("ann@example.test", "c1"))["expires"] == int(clock.t) + CONNECTION_LIFETIME
    assert {c.connection_id for c in reg.of("ann@example.test")} == {"c1", "c2"}
    assert not any(c.push for c in reg.of("ann@example.test"))
    assert reg.enable("ann@example.test", "c1", ("Email",))
    assert reg.of("ann@example.test")[0] == Connection("ann@example.test", "c1", True, ("Email",))
    assert reg.disable("ann@example.test", "c1") and not reg.of("ann@example.test")[0].push
    assert not reg.enable("ann@example.test", "nope", None)  # never registered (or expired and gone)
    reg.disconnect("ann@example.test", "c2")
    assert [c.connection_id for c in reg.of("ann@example.test")] == ["c1"]
    clock.t += CONNECTION_LIFETIME + 1  # TTL deletion lags: expired items are skipped
    assert reg.of("ann@example.test") == []


def test_state_change_names_the_types_asked_for():
    everything = state_change("ann@example.test", 42, Connection("ann@example.test", "c", True))
    assert everything == {"@type": "StateChange", "changed": {account_id("ann@example.test"): {
        "Mailbox": "42", "Email": "42", "Thread": "42", "Quota": "42"}}}
    only = state_change("ann@example.test", 42, Connection("ann@example.test", "c", True, ("Email", "Calendar")))
    assert only["changed"][account_id("ann@example.test")] == {"Email": "42"}
    assert state_change("ann@example.test", 42, Connection("ann@example.test", "c", True, ("Calendar",))) is None


def test_fan_out_posts_to_enabled_connections_and_prunes_gone_ones():
    reg = Registry(MemoryItems())
    for cid in ("live", "gone", "broken", "quiet"):
        reg.connect("ann@example.test", cid)
        if cid != "quiet":
            reg.enable("ann@example.test", cid, None)
    posted = {}

    def post(cid, data):
        if cid == "gone":
            raise Gone(cid)
        if cid == "broken":
            raise RuntimeError("throttled")
        posted[cid] = json.loads(data)

    out = fan_out([Notice("ann@example.test", 9), Notice("nobody@example.test", 3)], reg, post)
    assert (out.posted, out.gone, out.failed, out.accounts) == (1, 1, 1, 2)
    assert posted["live"]["changed"][account_id("ann@example.test")]["Email"] == "9"
    assert {c.connection_id for c in reg.of("ann@example.test")} == {"live", "broken", "quiet"}  # gone pruned


# --- the functions ------------------------------------------------------------------------
def _fn(name: str):
    spec = function_specs()[name]
    load_handler(spec["code_uri"], spec["handler"], f"postern_fn_{name}")
    return sys.modules[f"postern_fn_{name}"]


def test_authorizer_allows_a_ticket_once_and_denies_the_rest(handler_env, directory):
    handler_env()
    from postern.tokens import tokens_for

    directory.add_domain("example.test")
    directory.add_user("ann@example.test", "pw-unused-here")
    ticket = tokens_for().issue_ticket(directory.get_user("ann@example.test")).value
    mod = _fn("PushFunction")
    arn = "arn:aws:execute-api:us-east-1:123456789012:api/push/$connect"

    def ask(q):
        return mod.lambda_handler({"type": "REQUEST", "methodArn": arn, "queryStringParameters": q},
                                  FakeContext("PushFunction"))

    ok = ask({"ticket": ticket})
    assert ok["policyDocument"]["Statement"] == [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": arn}]
    assert ok["context"] == {"user": "ann@example.test"}
    for q in ({"ticket": ticket}, {"ticket": "psw_" + "x" * 43}, {"ticket": "pw-unused-here"}, {}):
        assert ask(q)["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_feed_push_step_never_fails_the_batch():
    mod = _fn("FeedFunction")
    reg = Registry(MemoryItems())
    reg.connect("ann@example.test", "c1")
    reg.enable("ann@example.test", "c1", None)
    rec = {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "L#ann@example.test"}}, "SequenceNumber": "1",
                                               "NewImage": {"u": {"S": "ann@example.test"}, "ms": {"N": "4"}}}}
    got = []
    assert mod.push_changes([rec], reg, lambda cid, data: got.append((cid, json.loads(data)))).posted == 1
    assert got[0][1]["changed"][account_id("ann@example.test")]["Email"] == "4"

    class Down(MemoryItems):
        def query(self, *a, **k):
            from postern.errors import StoreUnavailable

            raise StoreUnavailable("dynamodb down")

    assert mod.push_changes([rec], Registry(Down()), lambda *a: None).failed == 1  # logged, not raised


# --- the template -------------------------------------------------------------------------
def test_websocket_api_routes_and_least_privilege_grants():
    t = load_template()
    assert list(resources_of_type(t, "AWS::ApiGatewayV2::Api")) == ["PushApi"]
    assert t["Resources"]["PushApi"]["Properties"]["ProtocolType"] == "WEBSOCKET"
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in resources_of_type(t, "AWS::ApiGatewayV2::Route").values()}
    assert set(routes) == {"$connect", "$disconnect", "$default"}
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"  # the ticket, on the only route that can have one
    (authz,) = resources_of_type(t, "AWS::ApiGatewayV2::Authorizer").values()
    assert authz["Properties"]["IdentitySource"] == ["route.request.querystring.ticket"]
    (stage,) = resources_of_type(t, "AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["StageName"] == "push" and "AccessLogSettings" in stage["Properties"]
    assert "querystring" not in stage["Properties"]["AccessLogSettings"]["Format"]  # never a ticket in a log

    def grants(fn: str) -> list[dict]:
        out = []
        for p in t["Resources"][fn]["Properties"]["Policies"]:
            if isinstance(p, dict) and "Statement" in p:
                out += p["Statement"]
        return out

    manage = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${PushApi}/push/POST/@connections/*"
    for fn in ("FeedFunction", "PushFunction"):
        stmts = [s for s in grants(fn) if "execute-api:ManageConnections" in s["Action"]]
        assert [s["Resource"] for s in stmts] == [{"Fn::Sub": manage}], fn  # this API's stage only, POST only
        assert all(s["Action"] == ["execute-api:ManageConnections"] for s in stmts)
    everyone_else = [n for n in resources_of_type(t, "AWS::Serverless::Function") if n not in ("FeedFunction", "PushFunction")]
    assert not any("execute-api" in json.dumps(grants(n)) for n in everyone_else)
    env = t["Resources"]["HttpsFunction"]["Properties"]["Environment"]["Variables"]
    assert env["POSTERN_PUSH_URL"] == {"Fn::Sub": "wss://${PushApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/push"}
