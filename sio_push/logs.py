"""Logging, configured once by the entry point: text for a terminal, one JSON object a line for production.

python-socketio and python-engineio log every packet, tokens included, at INFO; their loggers are held
at WARNING whatever the level, so no token or payload reaches the logs. The access log names the path
but never the query string, where older clients carry their token.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

_QUIET = ("socketio", "engineio")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


class AccessLogger(AbstractAccessLogger):
    """Method, path without its query, status and time; never the query string (it may hold a token)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1fms", request.method, request.path, response.status, time * 1000)


class BadInputLog:
    """Lines about clients' bad input: one line each, no traceback, bounded per client and per process.

    A client may cause at most `per_client` lines a minute, and all clients together `per_second` lines a
    second; what is held back is counted and told in one "suppressed N" line once lines are allowed again.
    Tracebacks are for sio-push's own bugs, never for what a client sent.

    :param logger: where the lines go.
    :param per_client: lines a minute one client (sid, or address) may cause.
    :param per_second: lines a second for the whole process.
    """

    def __init__(self, logger: logging.Logger, per_client: int = 5, per_second: int = 20) -> None:
        self._logger = logger
        self._per_client = per_client
        self._per_second = per_second
        self._minute = 0
        self._second = 0
        self._by_client: dict[str, int] = {}
        self._this_second = 0
        self._suppressed = 0

    def warning(self, client: str, message: str, *args: object) -> None:
        now = time.monotonic()
        minute, second = int(now // 60), int(now)
        if minute != self._minute:
            self._minute, self._by_client = minute, {}
        if second != self._second:
            self._second, self._this_second = second, 0
        count = self._by_client.get(client, 0)
        if count >= self._per_client or self._this_second >= self._per_second:
            self._suppressed += 1
            return
        self._by_client[client] = count + 1
        self._this_second += 1
        if self._suppressed:
            self._logger.warning("suppressed %d more lines about bad client input", self._suppressed)
            self._suppressed = 0
        self._logger.warning(message, *args)
