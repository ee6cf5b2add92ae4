"""Admin commands for outbound mail: ``postern queue``, ``postern trace``, ``postern domain dkim``.

In:   Settings and Clients (pointed at the local stack or a deployed one by
      the environment, like every ``postern`` command); command-line args.
Out:  text on stdout; exit status 0, or 1 with a message on stderr.
        queue list            pending outbound jobs (Query of the delivery
                              log's OUTQ partition - no Scan): queue id,
                              domain, recipients, attempts, last response,
                              next attempt.
        queue retry ID        attempt the job now: its next body (kept in
                              the delivery log) is sent again with no delay
                              under a new retry token, which makes the
                              waiting body stale (dropped when it arrives).
        queue drop ID [--bounce]
                              final state ``dropped`` for the pending
                              recipients and the job out of the log (its
                              waiting body is then stale and dropped when it
                              arrives). No notice by default: an
                              administrator dropping mail usually knows why;
                              ``--bounce`` sends the sender a failure report
                              (status 5.3.0, "dropped by administrator").
        trace ID [--cost]     every stage the message went through: gateway
                              acceptance (the spool object's envelope
                              metadata), local deliveries (the store's dedup
                              markers: the spool object's B# item and one
                              Query of X#), outbound attempts and
                              per-recipient states (delivery log, one
                              Query), notices. ``--cost``: the estimate of
                              :func:`postern.costs.message_cost` from the
                              stages counted (``trace_stages``).
        domain dkim DOMAIN [--algorithm rsa|ed25519|both] [--bits N]
                              generate and store (encrypted) the domain's
                              DKIM key(s); print the DNS TXT record(s).
        domain ses DOMAIN     create (or find) the domain's SES identity
                              (Easy DKIM, custom MAIL FROM, the events
                              configuration set) and print the records to
                              publish; ``domain add`` does this itself when
                              the transport is ses (:mod:`postern.sesidentity`).
Fails: a missing queue id, or a job whose token changed under us (it is
      being attempted right now), exits 1 with the reason.

``register(subparsers)`` adds ``queue`` and ``trace``;
``register_domain(domain_subparsers)`` adds ``domain dkim``. Each parser sets
``func(args, settings, clients) -> int``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime, timezone

from botocore.exceptions import ClientError

from . import clock, keys
from .deliverylog import DeliveryLog
from .envelope import NoticeJob, RecipientFailure

SPOOL_METADATA_KEY = "postern-envelope"  # gateway spool.METADATA_KEY


def _when(t) -> str:
    if not t:
        return "-"
    return datetime.fromtimestamp(float(t), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# --- queue ----------------------------------------------------------------
def queue_rows(settings, clients) -> list[dict]:
    return sorted(DeliveryLog(settings, clients).pending(), key=lambda i: i["sk"])


def format_queue(rows: list[dict]) -> str:
    if not rows:
        return "outbound queue is empty"
    out = [f"{'QUEUE ID':<28} {'DOMAIN':<24} {'ATT':>3} {'NEXT (UTC)':<19}  RECIPIENTS / LAST RESPONSE"]
    for r in rows:
        out.append(f"{r['queue_id']:<28} {r['domain']:<24} {int(r.get('attempts', 0)):>3} "
                   f"{_when(r.get('next_attempt')):<19}  {', '.join(r.get('recipients', []))}")
        out.append(f"{'':<28} {'':<24} {'':>3} {'':<19}  {r.get('last_response', '')}")
    return "\n".join(out)


def queue_retry(settings, clients, queue_id: str) -> list[str]:
    """Attempt every pending job of ``queue_id`` now; returns the domains retried."""
    import secrets

    from .envelope import OutboundJob

    dlog = DeliveryLog(settings, clients)
    jobs = dlog.pending_for(queue_id)
    if not jobs:
        raise LookupError(f"{queue_id}: nothing pending in the outbound queue")
    now = clock.now()
    done = []
    for entry in jobs:
        if not entry.get("job"):
            raise LookupError(f"{queue_id}/{entry['domain']}: no retry body recorded")
        job = dataclasses.replace(OutboundJob.from_json(entry["job"]), not_before=now, token=secrets.token_hex(8))
        if not dlog.retoken(queue_id, entry["domain"], entry.get("token", ""), job.token, job.to_json(), now):
            raise LookupError(f"{queue_id}/{entry['domain']}: changed meanwhile; it may be being attempted right now")
        clients.sqs.send_message(QueueUrl=settings.outbound_queue_url, MessageBody=job.to_json())
        done.append(entry["domain"])
    return done


def queue_drop(settings, clients, queue_id: str, bounce: bool = False) -> list[dict]:
    now = clock.now()
    jobs = DeliveryLog(settings, clients).drop(queue_id, now)
    if not jobs:
        raise LookupError(f"{queue_id}: nothing pending in the outbound queue")
    for job in jobs:  # the waiting bodies are stale now: the deliver function drops them when they arrive
        if bounce and job.get("mail_from"):
            origs = job.get("original_recipients") or [""] * len(job.get("recipients", []))
            failures = tuple(dataclasses.asdict(RecipientFailure(
                recipient=r, status="5.3.0", diagnostic="x-postern; dropped by administrator",
                original_recipient=o, action="failed", last_attempt=now))
                for r, o in zip(job.get("recipients", []), origs))
            notice = NoticeJob(queue_id=queue_id, s3_key=job.get("s3_key", settings.spool_prefix + queue_id),
                               mail_from=job["mail_from"], received_at=float(job.get("received_at", 0)),
                               kind="failed", recipients=failures)
            clients.sqs.send_message(QueueUrl=settings.ndr_queue_url, MessageBody=notice.to_json())
    return jobs


# --- trace ----------------------------------------------------------------
def trace_data(settings, clients, queue_id: str) -> dict:
    """Everything known about ``queue_id``: {"accepted", "local", "outbound", "states", "notices", "events"}."""
    out: dict = {"queue_id": queue_id, "accepted": None, "local": [], "attempts": [], "states": [],
                 "notices": [], "drops": []}
    try:
        head = clients.s3.head_object(Bucket=settings.bucket, Key=settings.spool_prefix + queue_id)
        meta = head.get("Metadata", {})
        summary = meta.get(SPOOL_METADATA_KEY)
        out["accepted"] = json.loads(summary) if summary else {"metadata": meta}
        out["accepted"]["stored_bytes"] = head.get("ContentLength", 0)
    except ClientError:
        pass
    from .tracing import sampled, trace_id

    if out["accepted"] and sampled(queue_id, settings.trace_sample_rate):  # the gateway's decision, replayed
        out["xray"] = trace_id(queue_id, float(out["accepted"].get("received_at") or 0))
    r = clients.dynamodb.query(TableName=settings.mail_table, KeyConditionExpression="pk = :pk",
                               ExpressionAttributeValues={":pk": {"S": keys.dedup_pk(queue_id)}}, ConsistentRead=True)
    from .items import deserialize, serialize
    from .store.records import dedup_markers

    out["local"] = [deserialize(i) for i in r.get("Items", [])]
    blob = clients.dynamodb.get_item(TableName=settings.mail_table, Key=serialize(keys.blob_key(settings.spool_prefix +
                                                                                               queue_id)),
                                     ConsistentRead=True).get("Item")
    marked = dedup_markers(deserialize(blob) if blob else None)  # the first deliveries' markers ride in B#
    out["local"] = sorted([{"sk": sk, **m} for sk, m in marked.items()] + out["local"], key=lambda i: i["sk"])
    for item in DeliveryLog(settings, clients).history(queue_id):
        stage = item.get("stage") or item["sk"].split("#", 1)[0]
        if item["sk"].startswith("rcpt#"):
            out["states"].append(item)
        elif stage == "deliver":
            out["attempts"].append(item)
        elif stage == "ndr":
            out["notices"].append(item)
        elif stage == "drop":
            out["drops"].append(item)
    return out


def trace_stages(data: dict) -> dict[str, int]:
    """Stage counts for :func:`postern.costs.message_cost` (the ``--cost`` seam)."""
    return {
        "accept": 1 if data.get("accepted") else 0,
        "route": 1 if data.get("accepted") else 0,
        "store": len(data.get("local", [])),
        "deliver": len(data.get("attempts", [])),
        "notice": len(data.get("notices", [])),
    }


def format_trace(data: dict) -> str:
    qid = data["queue_id"]
    lines = [f"trace {qid}"]
    acc = data.get("accepted")
    if acc:
        lines.append(f"  {_when(acc.get('received_at'))}  gateway   accepted from <{acc.get('mail_from', '')}>"
                     f" for {', '.join(acc.get('rcpt_to', []))} ({acc.get('size', acc.get('stored_bytes', 0))} bytes"
                     f"{', client ' + acc['client_ip'] if acc.get('client_ip') else ''}"
                     f"{', auth ' + acc['auth_user'] if acc.get('auth_user') else ''})")
    else:
        lines.append("  (spool object gone or never written: gateway details unavailable)")
    if data.get("xray"):
        lines.append(f"  {'':19}  x-ray     trace {data['xray']} (sampled at POSTERN_TRACE_SAMPLE)")
    local = data.get("local", [])
    remote_domains = sorted({a.get("domain", "") for a in data.get("attempts", [])})
    if local or remote_domains:
        lines.append(f"  {'':19}  router    local: {', '.join(i['sk'] for i in local) or '-'}; "
                     f"remote: {', '.join(remote_domains) or '-'}")
    for i in local:
        user, _, mailbox = i["sk"].rpartition("#")
        lines.append(f"  {_when(i.get('at') or i.get('created'))}  store     {user} {mailbox} uid {i.get('uid', '?')}")
    for a in sorted(data.get("attempts", []), key=lambda x: x["sk"]):
        lines.append(f"  {_when(a.get('at'))}  deliver   {a.get('domain')} attempt {a.get('attempt')} via "
                     f"{a.get('transport', '?')}" + (f", next {_when(a['next_attempt'])}" if a.get("next_attempt") else ""))
        for res in a.get("results", []):
            lines.append(f"  {'':19}            {res['recipient']}: {res['state']} - {res.get('response', '')}"
                         + (f" ({res['remote_mta']})" if res.get("remote_mta") else ""))
    for d in data.get("drops", []):
        lines.append(f"  {_when(d.get('at'))}  drop      {d.get('domain')}: {', '.join(d.get('recipients', []))}")
    for n in data.get("notices", []):
        where = ", ".join([*n.get("local", []), *n.get("remote", [])]) or f"nobody ({n.get('dropped')})"
        lines.append(f"  {_when(n.get('at'))}  ndr       {n.get('kind')} report {n.get('report_id')} to {where}")
    if data.get("states"):
        lines.append("  final states:")
        for s in data["states"]:
            lines.append(f"    {s['recipient']}: {s['state']} after {s.get('attempts', 0)} attempt(s): {s.get('last_response', '')}")
    return "\n".join(lines)


# --- domain dkim ----------------------------------------------------------
def domain_dkim(settings, clients, domain: str, algorithm: str = "rsa", bits: int = 2048) -> tuple[str, list]:
    from .address import normalize_domain
    from .dkim import KeyStore, generate

    d = normalize_domain(domain)
    keys_ = generate(settings, algorithm, bits)
    where = KeyStore(settings, clients).put(d, keys_)
    return where, keys_


def format_dkim(domain: str, where: str, keys_) -> str:
    lines = [f"DKIM key(s) for {domain} stored in {where}. Publish in DNS:", ""]
    for k in keys_:
        lines += [f"{k.record_name(domain)} TXT", f"  {k.txt_record()}", "", "zone file form:", f"  {k.zone_line(domain)}", ""]
    return "\n".join(lines).rstrip() + "\n"


# --- argparse wiring ------------------------------------------------------
def _fail(msg: str) -> int:
    print(f"postern: {msg}", file=sys.stderr)
    return 1


def _cmd_queue_list(args, settings, clients) -> int:
    print(format_queue(queue_rows(settings, clients)))
    return 0


def _cmd_queue_retry(args, settings, clients) -> int:
    try:
        domains = queue_retry(settings, clients, args.queue_id)
    except LookupError as exc:
        return _fail(str(exc))
    print(f"{args.queue_id}: retrying now ({', '.join(domains)})")
    return 0


def _cmd_queue_drop(args, settings, clients) -> int:
    try:
        jobs = queue_drop(settings, clients, args.queue_id, bounce=args.bounce)
    except LookupError as exc:
        return _fail(str(exc))
    n = sum(len(j.get("recipients", [])) for j in jobs)
    print(f"{args.queue_id}: dropped {n} recipient(s)" + (" (sender notified)" if args.bounce else ""))
    return 0


def _cmd_trace(args, settings, clients) -> int:
    data = trace_data(settings, clients, args.queue_id)
    if not data["accepted"] and not data["local"] and not data["attempts"] and not data["notices"]:
        return _fail(f"{args.queue_id}: no trace of this queue id")
    print(format_trace(data))
    if args.cost:
        from .costs import message_cost

        size = int((data.get("accepted") or {}).get("size", 0) or 0)
        print(message_cost(trace_stages(data), size=size).to_text())
    return 0


def _cmd_domain_dkim(args, settings, clients) -> int:
    where, keys_ = domain_dkim(settings, clients, args.domain, args.algorithm, args.bits)
    print(format_dkim(args.domain.lower(), where, keys_), end="")
    return 0


def register(subparsers) -> None:
    """Add ``queue`` and ``trace`` to the ``postern`` command."""
    q = subparsers.add_parser("queue", help="the outbound queue: list, retry, drop")
    qs = q.add_subparsers(dest="queue_command", required=True)
    p = qs.add_parser("list", help="pending outbound mail with attempts and last response")
    p.set_defaults(func=_cmd_queue_list)
    p = qs.add_parser("retry", help="attempt a queued message now")
    p.add_argument("queue_id")
    p.set_defaults(func=_cmd_queue_retry)
    p = qs.add_parser("drop", help="give up on a queued message (no notice unless --bounce)")
    p.add_argument("queue_id")
    p.add_argument("--bounce", action="store_true", help="send the sender a failure report")
    p.set_defaults(func=_cmd_queue_drop)
    t = subparsers.add_parser("trace", help="every stage a message went through")
    t.add_argument("queue_id")
    t.add_argument("--cost", action="store_true", help="estimate what this message cost in AWS")
    t.set_defaults(func=_cmd_trace)


def _cmd_domain_ses(args, settings, clients) -> int:
    from .address import normalize_domain
    from .sesidentity import SesIdentityError, ensure_identity, format_records

    d = normalize_domain(args.domain)
    try:
        print(format_records(d, ensure_identity(settings, clients, d)), end="")
    except SesIdentityError as exc:
        return _fail(exc.text)
    return 0


def register_domain(domain_subparsers) -> None:
    """Add ``dkim`` and ``ses`` under ``postern domain``."""
    p = domain_subparsers.add_parser("ses", help="create the domain's SES identity and print its DNS records")
    p.add_argument("domain")
    p.set_defaults(func=_cmd_domain_ses)
    p = domain_subparsers.add_parser("dkim", help="generate a DKIM key and print its DNS record")
    p.add_argument("domain")
    p.add_argument("--algorithm", choices=("rsa", "ed25519", "both"), default="rsa")
    p.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")
    p.set_defaults(func=_cmd_domain_dkim)
