"""The embedded moto server standing in for AWS.

In:   a loopback port (0 picks a free one; ``postern-local`` uses 4566 unless
      ``POSTERN_LOCAL_MOTO_PORT`` says otherwise).
Out:  :class:`MotoServer` with ``endpoint`` (``http://127.0.0.1:<port>``) and
      :data:`FAKE_CREDENTIALS`, the environment every local client needs so
      nothing can ever reach a real AWS account.
Fails: a port in use raises OSError from ``start()``.
"""

from __future__ import annotations

import logging
import socket

from moto.server import ThreadedMotoServer

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class MotoServer:
    def __init__(self, port: int = 0, host: str = "127.0.0.1"):
        self.host = host
        self._requested_port = port
        self._server: ThreadedMotoServer | None = None
        self.port = 0

    def start(self) -> MotoServer:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per AWS request otherwise
        if self._requested_port:
            # ThreadedMotoServer binds in its thread and would wait forever for a port in use.
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self.host, self._requested_port))
                except OSError as exc:
                    raise OSError(exc.errno, f"moto port {self.host}:{self._requested_port} is in use") from None
        self._server = ThreadedMotoServer(self.host, self._requested_port, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        return self

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
