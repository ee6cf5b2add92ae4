"""bench/load.py's probe threads when the gateway refuses a login for now (NO [UNAVAILABLE], what
POSTERN_AUTH_QUEUE_WAIT answers in a login storm): the refusal is counted apart (REFUSED) and the
probe tries again, instead of ending (the session probe) or counting a failure (the cached-login
probe). Before: a refused first login ended the session probe without releasing ``ready``, so the
probe process waited forever and ``make load`` crashed on its results; a refused warm-up login
killed the probe process.

The server here is a loopback IMAP responder that refuses every other LOGIN: the subject is the
bench's imaplib client, and the real gateway cannot be made to refuse on cue.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import load  # noqa: E402


class RefusingImap:
    """Greets, refuses every other LOGIN with NO [UNAVAILABLE], answers the rest OK."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.logins = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        try:
            conn.sendall(b"* OK test ready\r\n")
            for line in f:
                if line.strip() == b"DONE":
                    conn.sendall(idle_tag + b" OK IDLE done\r\n")
                    continue
                tag, _, rest = line.strip().partition(b" ")
                cmd = rest.split(b" ", 1)[0].upper()
                if cmd == b"LOGIN":
                    with self.lock:
                        self.logins += 1
                        refuse = self.logins % 2 == 1
                    conn.sendall(tag + (b" NO [UNAVAILABLE] Server busy, try again later\r\n" if refuse
                                        else b" OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n"))
                elif cmd == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n")
                elif cmd == b"SELECT":
                    conn.sendall(b"* 1 EXISTS\r\n" + tag + b" OK [READ-WRITE] selected\r\n")
                elif cmd == b"FETCH":
                    conn.sendall(b"* 1 FETCH (FLAGS ())\r\n" + tag + b" OK done\r\n")
                elif cmd == b"IDLE":
                    idle_tag = tag
                    conn.sendall(b"+ idling\r\n")
                elif cmd == b"LOGOUT":
                    conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                    return
                else:
                    conn.sendall(tag + b" OK done\r\n")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def test_probes_count_a_temporary_login_refusal_and_go_on():
    server = RefusingImap()
    stats = load.Stats()
    phase = {"stats": stats}
    stop = threading.Event()
    ready = threading.Semaphore(0)
    try:
        threads = load.start_probes(server.port, ["u"], phase, stop, think=0.01, ready=ready)
        assert ready.acquire(timeout=120), "the session probe never logged in and selected"
        for _ in range(1200):  # a cached login went through after a refusal (wide ceiling: 120 s)
            if stats.lat.get("LOGIN (cached)") and stats.lat.get("FETCH 1:* (FLAGS)"):
                break
            stop.wait(0.1)
    finally:
        stop.set()
    for t in threads:
        t.join(60)
    server.close()
    assert not any(t.is_alive() for t in threads)
    assert stats.lat.get("LOGIN (cached)") and stats.lat.get("FETCH 1:* (FLAGS)")
    assert len(stats.lat.get(load.REFUSED, [])) >= 2  # the warm-up's, and the probes'
    assert not stats.errors, dict(stats.kinds)
