#!/usr/bin/env python3
"""Push a new message the way Linen's backend does once it has saved it, with `sio_push.client`.

    export PUSH_SERVICE_URL=http://localhost:4000 PUSH_SERVICE_KEY=...
    python push.py general "hello" [--thread T] [--community C] [--mention USER]

Posts the message to its channel (and thread), tells the community, and notifies a mentioned user;
prints each answer as a JSON line. From blocking code (Django, Celery), `PushClient` has the same methods.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

from sio_push.client import AsyncPushClient, PushError


def linen_message(channel_id: str, thread_id: str, text: str) -> dict[str, Any]:
    """The fields Linen's backend sends with a new thread: `message` and `thread` as JSON strings."""
    message_id = str(uuid.uuid4())
    message = {"id": message_id, "body": text, "threadId": thread_id, "sentAt": int(time.time() * 1000)}
    thread = {"id": thread_id, "channelId": channel_id, "messages": [message]}
    return {
        "channel_id": channel_id,
        "thread_id": thread_id,
        "message_id": message_id,
        "imitation_id": str(uuid.uuid4()),
        "is_thread": True,
        "is_reply": False,
        "message": json.dumps(message),
        "thread": json.dumps(thread),
    }


async def push_async(url: str, key: str, args: argparse.Namespace) -> None:
    fields = linen_message(args.channel, args.thread, args.text)
    async with AsyncPushClient(url, key) as push:
        print(json.dumps(await push.push_message(**fields)), flush=True)
        if args.community:
            print(json.dumps(await push.push_community(args.community, thread_id=args.thread)), flush=True)
        if args.mention:
            mention = {"thread_id": args.thread, "channel_id": args.channel, "is_mention": True}
            print(json.dumps(await push.push_user(args.mention, mention_type="user", **mention)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("channel")
    parser.add_argument("text")
    parser.add_argument("--thread", default=str(uuid.uuid4()))
    parser.add_argument("--community")
    parser.add_argument("--mention", metavar="USER")
    args = parser.parse_args()
    url = os.environ.get("PUSH_SERVICE_URL", "http://localhost:4000")
    key = os.environ.get("PUSH_SERVICE_KEY")
    if not key:
        sys.exit("PUSH_SERVICE_KEY is required")
    try:
        asyncio.run(push_async(url, key, args))
    except PushError as exc:  # Unauthorized, BadRequest (exc.errors), PayloadTooLarge, ServiceUnavailable...
        sys.exit(f"push failed: {exc} {json.dumps(getattr(exc, 'errors', None) or '')}")


if __name__ == "__main__":
    main()
