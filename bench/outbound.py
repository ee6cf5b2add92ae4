"""Outbound throughput: the local pipeline to a fake MX vs smtplib straight to it.

In:   nothing but the local packages: an embedded LocalStack (moto, the real
      router and deliver handlers fed by the pollers, no gateway listeners)
      with the mx transport, DNS from a loopback FakeDNS, the remote MX a
      FakeMX on 127.0.0.1:0; the sender's domain has a DKIM key, so every
      message is signed as it would be in production.
Out:  on stdout: msg/s of (a) smtplib sending each message straight to the
      fake MX (one connection per message, as the deliver function opens one
      per job) and (b) the pipeline - authenticated envelopes on the inbound
      queue, drained through router -> outbound queue -> deliver -> fake MX -
      in the same run; the ratio (b)/(a); and the AWS requests per outbound
      message counted with a botocore hook (``Clients.register_hook``), by
      service and operation, split into what the handlers call and what
      Lambda's event source mapping does (ReceiveMessage/DeleteMessage*;
      local pollers also make empty polls, which inflate that part).
      ``main(argv)``; ``--quick`` for a short run, ``-n`` messages,
      ``--size`` bytes each.
Fails: exits non-zero if any message is not delivered.

Injection (the gateway's S3 PUT + SQS SendMessage per message) happens
before the clock starts and is not counted: it is the ingest benchmark's.
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import time
import uuid
from collections import Counter

ESM_OPS = {"sqs.ReceiveMessage", "sqs.DeleteMessage", "sqs.DeleteMessageBatch"}


def make_message(sender: str, rcpt: str, size: int) -> bytes:
    head = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: outbound bench\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@bench.test>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def baseline(port: int, msgs: list[tuple[str, str, bytes]]) -> float:
    t0 = time.perf_counter()
    for sender, rcpt, raw in msgs:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.test", timeout=10) as s:
            s.sendmail(sender, [rcpt], raw)
    return len(msgs) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 messages instead of 200")
    ap.add_argument("-n", type=int, default=0, help="messages per run")
    ap.add_argument("--size", type=int, default=10 * 1024, help="bytes per message (default 10 KiB)")
    args = ap.parse_args(argv)
    n = args.n or (20 if args.quick else 200)

    from postern.cli_outbound import domain_dkim
    from postern.envelope import Envelope
    from postern_local.fakedns import FakeDNS
    from postern_local.fakemx import FakeMX
    from postern_local.stack import LocalStack

    with FakeDNS() as dns, FakeMX("mx.remote.bench") as mx:
        dns.add("remote.bench", "MX", "10 mx.remote.bench.").add("mx.remote.bench", "A", "127.0.0.1")
        sender, rcpt = "alice@sender.bench", "bob@remote.bench"
        msgs = [(sender, rcpt, make_message(sender, rcpt, args.size)) for _ in range(n)]

        base_rate = baseline(mx.port, msgs)
        mx.messages.clear()

        overrides = {"POSTERN_OUTBOUND_TRANSPORT": "mx", "POSTERN_OUTBOUND_VPC": "true",
                     "POSTERN_DNS_NAMESERVERS": dns.nameserver,
                     "POSTERN_MX_PORT": str(mx.port), "POSTERN_MTA_STS": "false", "POSTERN_OUTBOUND_TIMEOUT": "10",
                     "LOG_LEVEL": "ERROR"}
        with LocalStack(overrides, ephemeral_ports=True, background=False, gateway=False) as stack:
            stack.directory.add_domain("sender.bench")
            domain_dkim(stack.settings, stack.clients, "sender.bench")
            s3, sqs, st = stack.clients.s3, stack.clients.sqs, stack.settings

            def inject(raw: bytes) -> None:
                qid = uuid.uuid4().hex
                key = st.spool_prefix + qid
                s3.put_object(Bucket=st.bucket, Key=key, Body=raw)
                env = Envelope(queue_id=qid, mail_from=sender, rcpt_to=(rcpt,), s3_key=key, size=len(raw),
                               received_at=time.time(), auth_user=sender,
                               trace_headers="Received: from bench by mail.example.test\r\n")
                sqs.send_message(QueueUrl=st.inbound_queue_url, MessageBody=env.to_json())

            inject(msgs[0][2])  # warm-up: handler imports, DKIM key cache, boto3 connections
            stack.drain()
            mx.messages.clear()

            for _, _, raw in msgs:
                inject(raw)
            counts: Counter = Counter()
            stack.clients.register_hook(
                "before-send", lambda event_name, **kw: counts.update([".".join(event_name.split(".")[1:3])]))
            t0 = time.perf_counter()
            stack.drain(max_rounds=10 * n)
            elapsed = time.perf_counter() - t0
            pipe_rate = n / elapsed
            delivered = len(mx.messages)
            signed = sum(1 for m in mx.messages if m.data.startswith(b"DKIM-Signature:"))

    print(f"outbound benchmark: {n} messages of {args.size} bytes, one remote recipient each")
    print(f"  (a) smtplib straight to the fake MX : {base_rate:8.1f} msg/s")
    print(f"  (b) pipeline router->deliver->MX    : {pipe_rate:8.1f} msg/s  ({delivered} delivered, {signed} DKIM-signed)")
    print(f"  ratio (b)/(a)                       : {pipe_rate / base_rate:8.3f}")
    handler = {k: v for k, v in counts.items() if k not in ESM_OPS}
    esm = {k: v for k, v in counts.items() if k in ESM_OPS}
    print(f"  AWS requests per outbound message   : {sum(counts.values()) / n:8.2f} total, "
          f"{sum(handler.values()) / n:.2f} by the handlers, {sum(esm.values()) / n:.2f} event-source polling")
    for name, c in sorted(handler.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"      {name:<32} {c / n:6.2f}")
    for name, c in sorted(esm.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"      {name:<32} {c / n:6.2f}  (poller)")
    if delivered != n:
        print(f"FAILED: {n - delivered} message(s) not delivered", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
