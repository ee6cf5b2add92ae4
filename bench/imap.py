"""IMAP benchmark: Postern (in-memory store, local moto stack) against Dovecot on loopback.

In:   ``--quick`` (1,000 messages, one repetition) or the full 10,000-message
      mailbox; ``--messages N``, ``--reps N``, ``--no-moto``, ``--no-dovecot``.
Out:  a table per target of the time of each step (best of ``reps``):
        login+select  connect + LOGIN + SELECT INBOX (LOGIN verifies an argon2id
                      hash on both servers: the same hash is given to Dovecot)
        select        the SELECT alone
        uid-fetch     UID FETCH 1:* (UID FLAGS RFC822.SIZE)
        headers       FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])
        search        UID SEARCH SUBJECT x   (1% of the messages match)
        bodies        100 x UID FETCH n BODY.PEEK[]  (one command each)
      the Postern/Dovecot ratio per step (target <= 2x with the in-memory
      store), and, for the moto run, AWS requests per step by operation.
      Dovecot runs as a private instance under a temp dir (maildir, passwd
      file) when ``dovecot`` is installed; otherwise its column is skipped.
Fails: a target that cannot start is reported and skipped.

Loopback only. Postern runs in a child process (as Dovecot does), so the
imaplib client does not share its interpreter lock. Both servers are warmed up once (Dovecot builds its index,
Postern's process caches its mailbox index) before anything is timed: the
steps measure a client reconnecting to a mailbox the server has seen.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HOST = "127.0.0.1"
USER, PW = "bench@example.test", "bench-password"
STEPS = ("login+select", "select", "uid-fetch", "headers", "search", "bodies")


def make_message(i: int) -> bytes:
    subj = f"Report {i} topic x-ray" if i % 100 == 0 else f"Message number {i} about things"
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30 + "\r\n") * 2
    return (f"From: Sender {i % 37} <sender{i % 37}@remote.test>\r\nTo: {USER}\r\nSubject: {subj}\r\n"
            f"Date: Tue, 01 Dec 2026 10:{i % 60:02d}:00 +0000\r\nMessage-ID: <{i}@bench.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


# ----------------------------------------------------------------- the client side
def run_steps(port: int, n: int, counter=None) -> tuple[dict[str, float], dict[str, dict]]:
    times: dict[str, float] = {}
    requests: dict[str, dict] = {}

    def timed(name, fn):
        before = counter.snapshot() if counter else None
        t0 = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - t0
        if counter:
            after = counter.snapshot()
            requests[name] = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
        return out

    def login_select():
        c = imaplib.IMAP4(HOST, port, timeout=300)
        c.login(USER, PW)
        t0 = time.perf_counter()
        typ, data = c.select("INBOX")
        times["select"] = time.perf_counter() - t0
        assert typ == "OK" and int(data[0]) == n, data
        return c

    c = timed("login+select", login_select)

    def uid_fetch():
        typ, data = c.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)")
        assert typ == "OK" and len(data) == n, (typ, len(data))

    timed("uid-fetch", uid_fetch)

    def headers():
        typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
        assert typ == "OK" and sum(1 for d in data if isinstance(d, tuple)) == n

    timed("headers", headers)

    def search():
        typ, data = c.uid("SEARCH", "SUBJECT", "x-ray")
        assert typ == "OK" and len(data[0].split()) == (n + 99) // 100, data

    timed("search", search)
    typ, data = c.uid("SEARCH", "ALL")
    uids = [int(u) for u in data[0].split()]
    pick = uids[:: max(1, len(uids) // 100)][:100]

    def bodies():
        for u in pick:
            typ, d = c.uid("FETCH", str(u), "(BODY.PEEK[])")
            assert typ == "OK" and d[0][1].startswith(b"From:") or d[0][1].find(b"Subject:") >= 0

    timed("bodies", bodies)
    c.logout()
    return times, requests


def best(port, n, reps, counter=None):
    run_steps(port, n)  # warm-up
    results = [run_steps(port, n, counter) for _ in range(reps)]
    times = {k: min(r[0][k] for r in results) for k in STEPS}
    return times, results[-1][1]


# ----------------------------------------------------------------- Postern
class PosternServer:
    def __init__(self, backend):
        self.backend = backend
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self):
        from postern_gateway.imap.server import start_imap

        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(start_imap(self.backend, HOST, 0), self.loop)
        self.server = fut.result(30)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc):
        async def stop():
            self.server.close()
            for t in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                t.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def populate(store, n: int, threads: int = 1) -> None:
    store.ensure_mailboxes(USER)

    def one(i):
        from postern.errors import StoreUnavailable

        for attempt in range(5):  # moto under load sometimes answers 500 after applying a write
            try:
                # the dedup key makes a retry of an append that did land a no-op
                return store.append(USER, "INBOX", make_message(i), internaldate=1764583200.0 + i,
                                    dedup=f"bench{i}#{USER}#INBOX")
            except StoreUnavailable:
                if attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))

    if threads == 1:
        for i in range(n):
            one(i)
    else:
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(one, range(n)))


def _serve_memory(n):
    from postern.config import Settings
    from postern.directory import memory_directory
    from postern.store.memory import MemoryMailStore
    from postern_gateway.backend import Backend
    from postern_gateway.blocking import Blocking

    store = MemoryMailStore()
    d = memory_directory()
    d.add_domain("example.test")
    d.add_user(USER, PW)
    populate(store, n)
    be = Backend(settings=Settings().replace(login_fail_delay=0, allow_plaintext_auth=True), store=store,
                 directory=d, blocking=Blocking(8))
    return be, None, lambda: None


def _serve_moto(n):
    from postern_gateway.backend import Backend
    from postern_gateway.blocking import Blocking
    from postern_local.requests import RequestCounter
    from postern_local.stack import LocalStack

    stack = LocalStack({"POSTERN_LOGIN_FAIL_DELAY": "0"}, ephemeral_ports=True, background=False,
                       gateway=False).start()
    from postern.errors import AlreadyExists

    for fn, args in ((stack.directory.add_domain, ("example.test",)), (stack.directory.add_user, (USER, PW))):
        try:
            fn(*args)
        except AlreadyExists:
            pass
    t0 = time.perf_counter()
    populate(stack.store, n, threads=1)  # moto rejects concurrent TransactWriteItems (HTTP 500)
    print(f"  (moto: stored {n} messages in {time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    counter = RequestCounter(probe=False).install(stack.clients)
    be = Backend(settings=stack.settings.replace(login_fail_delay=0, allow_plaintext_auth=True),
                 store=stack.store, directory=stack.directory, blocking=Blocking(16), clients=stack.clients)
    return be, counter, stack.stop


def _server_process(kind: str, n: int, conn) -> None:
    """Child process: the Postern server (and moto) with its own GIL; answers 'snap' and 'stop'."""
    be, counter, cleanup = (_serve_memory if kind == "memory" else _serve_moto)(n)
    try:
        with PosternServer(be) as srv:
            conn.send(srv.port)
            while True:
                msg = conn.recv()
                if msg == "snap":
                    conn.send(dict(counter.snapshot().total().requests) if counter else {})
                else:
                    break
    finally:
        cleanup()
        conn.send("stopped")


class _Snap:
    """Parent-side view of the child's request counter."""

    def __init__(self, conn):
        self.conn = conn

    def snapshot(self):
        self.conn.send("snap")
        return self.conn.recv()


def postern(kind: str, n: int, reps: int):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_server_process, args=(kind, n, child), daemon=True)
    proc.start()
    try:
        while not parent.poll(1):
            if not proc.is_alive():
                raise RuntimeError(f"{kind} server process died")
        port = parent.recv()
        return best(port, n, reps, _Snap(parent) if kind == "moto" else None)
    finally:
        if proc.is_alive():
            parent.send("stop")
        proc.join(60)
        if proc.is_alive():
            proc.kill()


# ----------------------------------------------------------------- Dovecot
DOVECOT_CONF = """\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{base}/mail/%u
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = username_format=%u {base}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={base}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def dovecot(n, reps):
    exe = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
    if not exe:
        return None
    base = tempfile.mkdtemp(prefix="postern-dovecot-")
    os.chmod(base, 0o755)
    port = free_port()
    st = os.stat(base)
    for d in ("run", "state", "home", f"mail/{USER}/cur", f"mail/{USER}/new", f"mail/{USER}/tmp"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    from postern.passwords import hash_password

    with open(os.path.join(base, "passwd"), "w") as f:
        # the same argon2id hash Postern verifies, so LOGIN costs the same on both sides
        f.write(f"{USER}:{{ARGON2ID}}{hash_password(PW)}\n")
    cur = os.path.join(base, "mail", USER, "cur")
    for i in range(n):
        with open(os.path.join(cur, f"{1764583200 + i}.M{i}P1.bench:2,"), "wb") as f:
            f.write(make_message(i))
    uid, gid = st.st_uid, st.st_gid
    if uid == 0:  # Dovecot refuses to run mail processes as root: hand the tree to an unprivileged user
        import pwd

        pw = pwd.getpwnam("nobody")
        uid, gid = pw.pw_uid, pw.pw_gid
        for root, dirs, files in os.walk(os.path.join(base, "mail")):
            for x in dirs + files:
                os.chown(os.path.join(root, x), uid, gid)
        os.chown(os.path.join(base, "mail"), uid, gid)
        os.chown(os.path.join(base, "home"), uid, gid)
    conf = os.path.join(base, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(DOVECOT_CONF.format(base=base, port=port, uid=uid, gid=gid))
    proc = subprocess.Popen([exe, "-F", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            err = proc.stderr.read(2000) if proc.poll() is not None else b""
            print(f"  dovecot did not start: {err.decode(errors='replace')}", file=sys.stderr)
            return None
        return best(port, n, reps)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 messages, one repetition")
    ap.add_argument("--messages", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--no-moto", action="store_true")
    ap.add_argument("--no-dovecot", action="store_true")
    args = ap.parse_args(argv)
    n = args.messages or (1000 if args.quick else 10_000)
    reps = args.reps or (1 if args.quick else 3)
    moto_n = args.messages or (300 if args.quick else 1_000)  # moto stores ~3-10 messages/s
    print(f"IMAP benchmark: {n} messages (moto run: {moto_n}), best of {reps}")
    runs: dict[str, tuple] = {}
    print("- Postern, in-memory store ...", file=sys.stderr)
    runs["postern-memory"] = postern("memory", n, reps)
    if not args.no_dovecot:
        print("- Dovecot ...", file=sys.stderr)
        d = dovecot(n, reps)
        if d is not None:
            runs["dovecot"] = d
        else:
            print("  dovecot not installed or not startable: skipped (apt-get install dovecot-imapd)")
    if not args.no_moto:
        print("- Postern, local moto stack ...", file=sys.stderr)
        try:
            runs["postern-moto"] = postern("moto", moto_n, reps)
        except Exception as exc:  # noqa: BLE001 - report the other targets anyway
            print(f"  moto run failed: {exc}")
    names = list(runs)
    print(f"\n{'step':<14}" + "".join(f"{nm:>16}" for nm in names) + ("   postern-memory/dovecot" if "dovecot" in runs else ""))
    for step in STEPS:
        row = f"{step:<14}" + "".join(f"{runs[nm][0][step] * 1000:>14.1f}ms" for nm in names)
        if "dovecot" in runs:
            ratio = runs["postern-memory"][0][step] / max(runs["dovecot"][0][step], 1e-9)
            row += f"   {ratio:>6.2f}x"
        print(row)
    if "dovecot" in runs:
        ratios = {st: runs["postern-memory"][0][st] / max(runs["dovecot"][0][st], 1e-9) for st in STEPS}
        within = [st for st, r in ratios.items() if r <= 2.0]
        print(f"\nsummary: Postern (in-memory store) / Dovecot within the 2x target on {len(within)} of "
              f"{len(STEPS)} steps; worst {max(ratios, key=ratios.get)} {max(ratios.values()):.2f}x")
    if "postern-moto" in runs:
        print(f"\nAWS requests per step (moto run, {moto_n} messages):")
        for step in STEPS:
            reqs = runs["postern-moto"][1].get(step, {})
            total = sum(v for v in reqs.values() if isinstance(v, int))
            detail = ", ".join(f"{k} {v}" for k, v in sorted(reqs.items()) if isinstance(v, int))
            print(f"  {step:<14} {total:>6}  {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
