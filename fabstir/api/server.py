"""The API as a node service (``start``/``run``/``stop``): uvicorn on the configured address."""

from __future__ import annotations

import logging
import socket
import threading
from concurrent.futures import Executor

import uvicorn
from fastapi import FastAPI

from fabstir.errors import ConfigError

log = logging.getLogger(__name__)


class ApiServer:
    """Serve an app with uvicorn; ``url`` is known once ``start()`` has bound the socket.

    ``jobs``, the executor running the requests' job flows when the server owns it, is shut down
    when serving ends: ``run()`` returns once the flows in progress have settled their jobs.
    """

    def __init__(self, app: FastAPI, host: str, port: int, *, jobs: Executor | None = None) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._jobs = jobs
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._started = threading.Event()

    @property
    def url(self) -> str:
        assert self._socket is not None, "call start() first"
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Bind the listening socket (so a taken port fails here, before anything runs).

        Raises:
            ConfigError: the address cannot be bound (``code="api_bind_failed"``).
        """
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen on {self._host}:{self._port}: {exc.strerror}",
                code="api_bind_failed",
            ) from exc
        self._socket = sock
        config = uvicorn.Config(
            self._app, log_level="warning", lifespan="off", ws="websockets-sansio"
        )
        self._server = uvicorn.Server(config)
        log.info("api listening", extra={"url": self.url})

    def run(self) -> None:
        assert self._server is not None and self._socket is not None, "call start() first"
        try:
            self._server.run(sockets=[self._socket])
        finally:
            if self._jobs is not None:
                self._jobs.shutdown(wait=True)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
