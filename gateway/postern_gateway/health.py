"""``GET /healthz``: is this gateway process serving? For the NLB target groups and ECS.

In:   the running :class:`~postern_gateway.app.Gateway` (its listeners and live sessions),
      on the gateway's own event loop, at ``settings.bind`` : ``settings.health_port``
      (``POSTERN_HEALTH_PORT``, 8081 in the container).
Out:  ``200`` and a small JSON body (listeners, open sessions by protocol, worst recent loop
      stall) while the event loop answers, its 1-second heartbeat has not been held up for more
      than :data:`MAX_LAG` seconds during the last :data:`STALL_MEMORY` seconds, every listener
      started is still serving and the gateway is not draining; ``503`` with the reason
      otherwise; ``404`` for any other path. Served on the event loop itself, so a wedged loop answers nothing at all and the
      check times out: a TCP check on a mail port would still pass, since the kernel completes
      the handshake for a listening socket whose loop never runs.
      As a command (``python -m postern_gateway.health``, the ECS container health check)
      it asks ``127.0.0.1:<health port>/healthz`` and exits 0 on 200, 1 otherwise.
Fails: a request line or headers over 4 KiB, or not complete within 5 seconds, are dropped;
      the server never raises into the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import urllib.error
import urllib.request

log = logging.getLogger("postern.gateway")

MAX_LAG = 5.0  # seconds the loop may stall (a heartbeat that late) and still count as healthy
STALL_MEMORY = 30.0  # seconds a longer stall keeps the check failing (the NLB asks every 10-30 s)
BEAT = 1.0
REQUEST_LIMIT = 4096
REQUEST_TIMEOUT = 5.0


class Health:
    def __init__(self, gateway):
        self.gateway = gateway
        self.draining = False
        self._beat_at = 0.0
        self._stall = (0.0, 0.0)  # (seconds, loop time when seen) of the last stall over MAX_LAG
        self._server: asyncio.base_events.Server | None = None
        self._beat: asyncio.Task | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._beat_at = loop.time()
        self._beat = loop.create_task(self._heartbeat())
        self._server = await asyncio.start_server(self._handle, host, port, limit=REQUEST_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(BEAT)
            now = loop.time()
            late = now - self._beat_at - BEAT
            if late > MAX_LAG:
                self._stall = (late, now)
            self._beat_at = now

    def status(self) -> tuple[int, dict]:
        now = asyncio.get_running_loop().time()
        overdue = now - self._beat_at - BEAT  # > 0: the heartbeat is late right now
        stall, seen = (overdue, now) if overdue > MAX_LAG else self._stall
        recent = stall > MAX_LAG and now - seen <= STALL_MEMORY
        listeners = {name: server.is_serving() for name, server in self.gateway.servers.items()}
        body = {"listeners": listeners, "sessions": self.gateway.backend.sessions.count(),
                "stall": round(stall if recent else 0.0, 3)}
        if self.draining:
            return 503, {**body, "status": "draining"}
        if recent:
            return 503, {**body, "status": f"event loop stalled for {stall:.1f} s, {now - seen:.0f} s ago"}
        down = sorted(name for name, serving in listeners.items() if not serving)
        if down:
            return 503, {**body, "status": "not serving: " + ", ".join(down)}
        return 200, {**body, "status": "ok"}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) == 3 and parts[0] in (b"GET", b"HEAD") and parts[1].split(b"?")[0] == b"/healthz":
            code, body = self.status()
        else:
            code, body = 404, {"status": "not found"}
        payload = json.dumps(body).encode()
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[code]
        writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Cache-Control: no-store\r\nConnection: close\r\n\r\n" % (code, reason.encode(), len(payload)))
        if parts[:1] != [b"HEAD"]:
            writer.write(payload)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def main() -> int:
    """The container's health check: exit 0 when /healthz answers 200 within 3 seconds."""
    from postern.config import get_settings

    port = get_settings().health_port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:  # noqa: S310
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthz: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
