"""JMAP push over WebSocket (RFC 8887) as `make run` serves it, driven by the `websockets` client.

The session on the local front advertises the socket; a one-time ticket from POST /auth/ticket
opens it (the push function's authorizer and $connect through postern_local.wsfront); after
WebSocketPushEnable, a message delivered over SMTP and a flag set over IMAP each reach the
socket as a StateChange, through the real pipeline: store -> the mail table's stream ->
FeedFunction -> @connections (the front's fake, checked against FeedFunction's IAM policy).
Refused: no ticket, a bad or used ticket, no "jmap" subprotocol. Hostile frames get an RFC 8887
RequestError, a frame over API Gateway's 128 KB closes the socket, and the front keeps serving.
Closing the socket removes its registry item; an item whose connection is gone is deleted by
the feed at its first post (410).
"""

from __future__ import annotations

import base64
import imaplib
import json
import smtplib
import time
import urllib.request
import uuid

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from postern import keys
from postern.jmap.account import account_id
from postern.jmap.websocket import WEBSOCKET
from postern.push import Registry

WITHIN = 30.0  # liveness ceiling (bench/push.py measures the latency)


def _http(stack, method: str, path: str, user: str, pw: str) -> dict:
    auth = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
    req = urllib.request.Request(stack.http_url + path, method=method, headers={"Authorization": auth})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _url(stack, user: str, pw: str) -> str:
    return _http(stack, "GET", "/.well-known/jmap", user, pw)["capabilities"][WEBSOCKET]["url"]


def _ticket(stack, user: str, pw: str) -> str:
    return _http(stack, "POST", "/auth/ticket", user, pw)["ticket"]


def _registry(stack) -> Registry:
    from postern.items import DynamoItems

    return Registry(DynamoItems(lambda: stack.clients.dynamodb, stack.settings.state_table, "state"))


def _wait(pred, what: str, ceiling: float = WITHIN):
    end = time.monotonic() + ceiling
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"not within {ceiling} s: {what}")


def _state_change(stack, ws, user: str) -> dict:
    """Drain the pipeline until a StateChange for ``user``'s account arrives (within WITHIN)."""
    end = time.monotonic() + WITHIN
    while time.monotonic() < end:
        stack.drain()
        try:
            msg = json.loads(ws.recv(timeout=0.5))
        except TimeoutError:
            continue
        if msg.get("@type") == "StateChange":
            return msg["changed"][account_id(user)]
    raise AssertionError("no StateChange")


def _open(stack, user: str, pw: str, **kw):
    return connect(f"{_url(stack, user, pw)}?ticket={_ticket(stack, user, pw)}", subprotocols=["jmap"],
                   open_timeout=WITHIN, close_timeout=5, **kw)


def _enable(stack, ws, user: str, **args) -> None:
    ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None, **args}))
    _wait(lambda: any(c.push for c in _registry(stack).of(user)), "push enabled in the registry")


def test_session_advertises_the_socket(stack, new_user):
    user, pw = new_user("wsess")
    cap = _http(stack, "GET", "/.well-known/jmap", user, pw)["capabilities"][WEBSOCKET]
    assert cap == {"url": stack.env["POSTERN_PUSH_URL"], "supportsPush": True}
    assert cap["url"] == f"ws://127.0.0.1:{stack.https.port}/push"  # the same port as the front, stage "push"
    from pathlib import Path

    from postern_local.__main__ import banner

    assert f"JMAP push:     {cap['url']}?ticket=" in banner(stack, Path(".postern-local/env"))  # make run says where


def test_smtp_delivery_and_imap_flag_push_state_changes(stack, new_user):
    user, pw = new_user("wspush")
    with _open(stack, user, pw) as ws:
        assert ws.subprotocol == "jmap"  # RFC 8887 §4.1
        _enable(stack, ws, user)
        raw = (f"From: carol@origin.example\r\nTo: {user}\r\nSubject: push me\r\n"
               f"Message-ID: <{uuid.uuid4().hex}@origin.example>\r\n\r\nhello\r\n").encode()
        with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as s:
            assert s.sendmail("carol@origin.example", [user], raw) == {}
        first = _state_change(stack, ws, user)
        assert set(first) >= {"Email", "Mailbox", "Thread"} and first["Email"] == first["Mailbox"]
        assert int(first["Email"]) > 0

        imap = imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=30)
        try:
            imap.login(user, pw)
            imap.select("INBOX")
            assert imap.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
        finally:
            imap.logout()
        second = _state_change(stack, ws, user)
        assert int(second["Email"]) > int(first["Email"])  # the account's change number moved on

        # the session's Email/get state is the state the push named (one model)
        api = {"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
               "methodCalls": [["Email/get", {"accountId": account_id(user), "ids": []}, "g"]]}
        auth = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
        req = urllib.request.Request(stack.http_url + "/jmap/api", data=json.dumps(api).encode(), method="POST",
                                     headers={"Authorization": auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["methodResponses"][0][1]["state"] == second["Email"]


def test_data_types_and_disable(stack, new_user):
    user, pw = new_user("wstypes")
    stack.store.ensure_mailboxes(user)
    stack.drain()
    with _open(stack, user, pw) as ws:
        _enable(stack, ws, user, dataTypes=["Mailbox"])
        stack.store.create_mailboxes(user, [("Projects", None)])
        assert _state_change(stack, ws, user) == {"Mailbox": _state_of(stack, user)}  # only what it asked for
        ws.send(json.dumps({"@type": "WebSocketPushDisable"}))
        _wait(lambda: not any(c.push for c in _registry(stack).of(user)), "push disabled in the registry")
        stack.store.create_mailboxes(user, [("Later", None)])
        stack.drain()
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1)  # nothing after Disable (the feed already ran: drain() returned)


def _state_of(stack, user: str) -> str:
    return str(max(ch.modseq for ch in stack.store.follow(user, 0)))


def test_refused_without_a_valid_ticket(stack, new_user):
    user, pw = new_user("wsbad")
    url = _url(stack, user, pw)
    for query, status in (("", 401), ("?ticket=psw_" + "A" * 43, 403), ("?ticket=" + pw, 403)):
        with pytest.raises(InvalidStatus) as err:
            connect(url + query, subprotocols=["jmap"], open_timeout=WITHIN)
        assert err.value.response.status_code == status, query
    ticket = _ticket(stack, user, pw)
    with connect(f"{url}?ticket={ticket}", subprotocols=["jmap"], open_timeout=WITHIN):
        pass
    with pytest.raises(InvalidStatus) as err:  # one-time: used above
        connect(f"{url}?ticket={ticket}", subprotocols=["jmap"], open_timeout=WITHIN)
    assert err.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as err:  # RFC 8887 §4.1: the client must ask for "jmap"
        connect(f"{url}?ticket={_ticket(stack, user, pw)}", open_timeout=WITHIN)
    assert err.value.response.status_code == 400


def test_disconnect_removes_the_registry_item_and_gone_ones_are_pruned(stack, new_user):
    user, pw = new_user("wsgone")
    with _open(stack, user, pw) as ws:
        _enable(stack, ws, user)
        (conn,) = _registry(stack).of(user)
    _wait(lambda: not _registry(stack).of(user), "the registry item removed by $disconnect")
    # an item whose $disconnect was lost: the feed's first post answers 410 and the item goes
    stack.clients.dynamodb.put_item(TableName=stack.settings.state_table, Item={
        **{k: {"S": v} for k, v in keys.push_key(user, "deadConnId0=").items()},
        "push": {"BOOL": True}, "expires": {"N": str(int(time.time()) + 600)}})
    assert [c.connection_id for c in _registry(stack).of(user)] == ["deadConnId0="]
    stack.store.ensure_mailboxes(user)
    _wait(lambda: stack.drain() >= 0 and not _registry(stack).of(user), "the gone connection's item pruned")
    assert conn.connection_id != "deadConnId0="


def test_hostile_frames_get_errors_and_the_front_keeps_serving(stack, new_user):
    user, pw = new_user("wshostile")
    with _open(stack, user, pw, max_size=None) as ws:
        for frame, kind in (("{not json", "notJSON"), (b"\x00\xff binary", "notJSON"), ("[1, 2]", "notRequest"),
                            (json.dumps({"@type": "Request", "id": "r1", "using": [], "methodCalls": []}), "notRequest"),
                            (json.dumps({"@type": "WebSocketPushEnable", "dataTypes": "Email"}), "notRequest"),
                            ("[" * 5000 + "]" * 5000, "notJSON"),
                            (json.dumps({"@type": "WebSocketPushEnable", "pad": "x" * 40_000}), "limit")):
            ws.send(frame)
            err = json.loads(ws.recv(timeout=WITHIN))
            assert err["@type"] == "RequestError" and err["type"] == f"urn:ietf:params:jmap:error:{kind}", frame[:40]
            assert err["status"] == 400
        assert err["limit"] == "maxSizeRequest"
        ws.send("x" * (200 * 1024))  # over API Gateway's 128 KB message: the socket is closed (1009)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WITHIN)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with _open(stack, user, pw) as ws:  # the front and the function are still there
        _enable(stack, ws, user)
