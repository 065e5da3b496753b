#!/usr/bin/env python3
"""Serve this folder and a development `POST /token`, standing in for your app (standard library only).

    sio-push --demo                                # with PUSH_CORS_ORIGINS=http://localhost:8000
    python3 serve.py --push-url http://localhost:4000 --port 8000

`POST /token {"user"}` is forwarded to the push server's development route `/demo/token` (served only with
`--demo`). In your app, this is your backend's route that signs a token for the logged-in user.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import urllib.error
import urllib.request
from pathlib import Path

MAX_BODY = 4096


class Handler(http.server.SimpleHTTPRequestHandler):
    push_url = "http://localhost:4000"

    def do_POST(self) -> None:
        if self.path != "/token":
            self.send_error(404)
            return
        body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), MAX_BODY))
        request = urllib.request.Request(
            self.push_url + "/demo/token", body, {"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, data = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, data = error.code, error.read()
        except OSError:
            status, data = 502, b'{"error": "the push server did not answer"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet: one line a request is noise here
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--push-url", default="http://localhost:4000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    Handler.push_url = args.push_url.rstrip("/")
    handler = functools.partial(Handler, directory=str(Path(__file__).parent))
    with http.server.ThreadingHTTPServer((args.host, args.port), handler) as server:
        print(f"open http://{args.host}:{server.server_port}/?server={args.push_url}&user=alice", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
