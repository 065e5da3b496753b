"""Logging, configured once by the entry point: text for a terminal, one JSON object a line for production.

python-socketio and python-engineio log every packet, tokens included, at INFO; their loggers are held
at WARNING whatever the level, so no token or payload reaches the logs. The access log names the path
but never the query string, where older clients carry their token.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
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


_QUERY = re.compile(r'("[A-Z]+ [^ ?"]*)\?[^ "]*')  # a request line's query string, in an access log line


class ClientErrorFilter(logging.Filter):
    """aiohttp's lines about what a client sent, made safe: one line, no traceback, no request text.

    aiohttp logs a malformed request ("Error handling request") with the parser's exception, whose
    message quotes the request line or a header (a token, say), and with a traceback; its default
    access log prints the request line, query string included. Attached to aiohttp's loggers by the app
    factory (`install_client_error_filter`): those lines become "bad HTTP request" lines rate-limited by a
    `BadInputLog`, and query strings are cut from access lines. aiohttp's other errors pass unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bad_input = BadInputLog(logging.getLogger("sio_push.http"))

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
            self.bad_input.warning(remote, "bad HTTP request from %s: %s (%s)", remote, type(exc).__name__, exc.code)
            return False
        if record.name == "aiohttp.access" and isinstance(record.msg, str) and "?" in record.msg:
            record.msg = _QUERY.sub(r"\1", record.msg)
        return True


def install_client_error_filter() -> None:
    """Attach one `ClientErrorFilter` to aiohttp's server and access loggers (once per process)."""
    for name in ("aiohttp.server", "aiohttp.access", "aiohttp.web"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
            logger.addFilter(_FILTER)


_FILTER = ClientErrorFilter()
