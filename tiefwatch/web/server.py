"""uvicorn on a socket bound up front: ``port=0`` picks a free port whose number is known before serving, a busy
port fails at once with one line, and the server can run in a thread (tests, ``tiefwatch label``) and be shut
down from another."""

from __future__ import annotations

import socket
import threading

import uvicorn
from starlette.types import ASGIApp


class WebServer:
    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 8000, access_log: bool = False) -> None:
        self.host = host.strip("[]")
        self.socket = self.bind(self.host, port)
        config = uvicorn.Config(app, log_level="warning", access_log=access_log, timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self._stopped = threading.Event()

    @staticmethod
    def bind(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError as error:
            sock.close()
            raise RuntimeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
        sock.set_inheritable(True)
        return sock

    @classmethod
    def check_port(cls, host: str, port: int) -> None:
        cls.bind(host.strip("[]"), port).close()

    @property
    def server_address(self) -> tuple[str, int]:
        return self.socket.getsockname()[:2]

    @staticmethod
    def format_url(host: str, port: int, token: str | None = None, path: str = "/") -> str:
        host = host.strip("[]")
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}{path}" + (f"?token={token}" if token else "")

    def url(self, token: str | None = None, path: str = "/") -> str:
        return self.format_url(self.host, self.server_address[1], token, path)

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Serve until ``shutdown`` (another thread) or Ctrl-C (the main thread)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def start(self) -> threading.Thread:
        """Serve from a daemon thread; returns once requests are accepted."""
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        while not self.server.started and not self._stopped.is_set():
            self._stopped.wait(0.02)
        if not self.server.started:
            raise RuntimeError("the web server did not start; see the log above")
        return thread

    def shutdown(self) -> None:
        self.server.should_exit = True
        self._stopped.wait(10)

    def server_close(self) -> None:
        self.socket.close()
