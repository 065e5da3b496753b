"""The entry point: read the environment, configure logging, run the server. Nothing else reads os.environ."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aiohttp import web

from .config import load_settings
from .errors import ConfigError
from .logs import AccessLogger, configure_logging

log = logging.getLogger("sio_push")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sio-push", description="Realtime push server for Linen (Socket.IO).")
    parser.add_argument("--dev", action="store_true", help="development: mint missing secrets (never in production)")
    parser.add_argument("--demo", action="store_true", help="also serve a demo chat at /demo (implies --dev)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = load_settings(os.environ, dev=args.dev, demo=args.demo)
    except ConfigError as exc:
        print(f"sio-push: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_format)
    for note in settings.dev_notes:
        log.warning("DEVELOPMENT MODE: %s; never run --dev or --demo in production", note)

    from .app import create_app

    app = create_app(settings)
    log.info("listening on %s:%s", settings.host, settings.port)
    if settings.demo:
        log.info("demo chat at http://%s:%s/demo", settings.host, settings.port)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLogger,
        print=None,
    )
