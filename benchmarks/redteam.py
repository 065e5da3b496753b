"""The red team's eleven inputs, replayed against a running server, each bounded in count and in time.

An earlier red-team run found eleven ways one client could hurt the server; each is fixed and has its
regression test. This is the attacker's side alone, sent to a server that is already running (meant for
the middle of the soak, to show that memory and open files stay flat and nothing crashes). `attack_all`
runs the attacks in turn and reports, for each, what the server did, whether that is what the contract
says (`ok`), and whether `GET /api/health` answered 200 right after (`healthy`).

`python -m benchmarks.redteam --url URL --key KEY --secret SECRET [--scale S]` runs them once and prints
the results as JSON. How the attacker reaches the server (its clients, raw frames) is `benchmarks.attacker`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from benchmarks.attacker import PATH, WAIT, Target, acks_within, client_frame, connected, flood
from sio_push.transport.frames import BINARY, PING

ATTACK_SECONDS = 20.0  # the most one attack may take
TOTAL_SECONDS = 180.0  # the most all of them may take
MAX_BUFFER_PUSHES = 300  # not scaled: the attack stops when the server cuts it off (~130 at 8 MiB)
CUT_WAIT = 15.0  # for the server to close a half head (its head timeout is 10 s by default)
BLOB = "x" * 64 * 1024
MIB = 1024 * 1024
RATE_LIMITED = {"ok": False, "error": "rate_limited"}
MARK = b'["redteam:mark"]'  # an event no handler has: answered unknown_event (or rate_limited)

Result = tuple[str, bool]  # what the server did; whether the contract says so
API_OK = {"200", "503"}  # a push's answers the contract allows (a 503 only with Retry-After)


def _api(status: int, retry_after: str | None) -> str:
    return "503 without Retry-After" if status == 503 and not retry_after else str(status)


async def binary_attachments(t: Target) -> Result:
    """A BINARY_EVENT announcing 9,999,999,999 attachments, then 60 KB binary frames: the server closes
    the connection (a binary packet from a client closes it)."""
    sent = 0
    async with connected(t, t.auth()) as (sio, _):
        await sio.ws.send_str('459999999999-["join",{"_placeholder":true,"num":0}]')
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            while sent < t.count(200) and not sio.closed.is_set():
                await sio.ws.send_bytes(bytes(60 * 1024))
                sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sio.closed.wait(), WAIT)
        closed = sio.closed.is_set()
    return f"{'closed' if closed else 'kept'} the connection ({sent} binary frames of 60 KB sent)", closed


async def polling_never_polls(t: Target) -> Result:
    """A long-polling session in a room that answers pings by POST but never GETs while 64 KB pushes go to
    the room: the server cuts it off at its buffer bound (PUSH_MAX_BUFFER_BYTES, 8 MiB by default)."""
    base = t.url + PATH + "polling"
    async with t.http.get(base) as response:
        url = f"{base}&sid={json.loads((await response.text())[1:])['sid']}"

    async def post(packet: str) -> int:
        async with t.http.post(url, data=packet) as response:
            await response.read()
            return response.status

    async def get_until(*prefixes: str) -> tuple[int, list[str]]:
        for _ in range(10):  # packets before the one awaited (presence) may take a poll or two
            async with t.http.get(url, timeout=aiohttp.ClientTimeout(total=WAIT)) as response:
                status, packets = response.status, (await response.text()).split("\x1e")
            if status != 200 or any(p.startswith(prefixes) for p in packets):
                return status, packets
        raise TimeoutError(f"no {prefixes} packet in 10 polls")

    pushes, statuses = 0, Counter[str]()
    try:
        await post("40" + json.dumps(t.auth()))
        if not (connect := (await get_until("40", "44"))[1])[-1].startswith("40"):
            raise ConnectionRefusedError(f"CONNECT answered {connect[-1][:100]!r}")
        await post('420["join","room:lobby:redteam"]')
        if (await get_until("430"))[0] != 200:
            raise ConnectionError("the join was not answered")
        while pushes < MAX_BUFFER_PUSHES:
            statuses[_api(*await t.push("redteam", n=pushes, blob=BLOB))] += 1
            pushes += 1
            if await post("3") != 200:
                break
        status, packets = await get_until("")  # one poll: 400 (the sid is gone), the CLOSE packet, or the pushes
        cut = status == 400 or "1" in packets
    finally:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await post("1")
    pushed = f"{pushes} pushes of 64 KiB ({pushes * len(BLOB) / MIB:.1f} MiB; API {dict(statuses)})"
    return f"{'cut it off' if cut else 'still served it'} after {pushed}", cut and set(statuses) <= API_OK


async def _half_head(t: Target, deadline: float) -> str:
    """One connection sending half a head, then a header line a second: "closed" by the server, "open" at
    `deadline`, or "refused"."""
    try:
        reader, writer = await t.tcp()
    except OSError:
        return "refused"
    try:
        writer.write(b"POST /api/message HTTP/1.1\r\nHost: redteam\r\nContent-Type: application/json\r\n")
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(1.0, deadline - time.monotonic())):
                    while await reader.read(4096):  # a 408, then the end
                        pass
                    return "closed"
            writer.write(b"X-Slow: 1\r\n")
        return "open"
    except ConnectionError:
        return "closed"
    finally:
        writer.transport.abort()


async def half_heads(t: Target) -> Result:
    """Connections that send half a request head, then a header line now and then (a slow client): the
    server closes each after its head timeout, however slowly the bytes come."""
    deadline = time.monotonic() + CUT_WAIT
    outcomes = Counter(await asyncio.gather(*(_half_head(t, deadline) for _ in range(t.count(200)))))
    opened = outcomes["closed"] + outcomes["open"]
    refused = f", {outcomes['refused']} refused" if outcomes["refused"] else ""
    return f"closed {outcomes['closed']} of {opened} half heads within {CUT_WAIT:.0f} s{refused}", not outcomes["open"]


async def lone_surrogates(t: Target) -> Result:
    """A lone surrogate, escaped, in a push body (400, never 500) and in the username of a `user:typing`
    (an error ack or none; the socket is served after it)."""
    key = json.dumps(t.service_key).encode()
    status, _ = await t.post("/api/channel", b'{"token": %s, "channel_id": "redteam-4", "x": "\\udc00"}' % key)
    room = "room:lobby:redteam-4"
    async with connected(t, t.auth()) as (sio, _):
        await sio.call("join", room)
        typing = await sio.emit("user:typing", {"room": room, "typing": True, "username": "\udc00"})
        after = await sio.call("join", room)
        [answer] = await acks_within([typing], WAIT)
    ok = status == 400 and (answer is None or answer.get("ok") is False) and after.get("ok") is True
    return f"push: HTTP {status}; typing: {answer or 'no ack'}, then a join: {after}", ok


async def presence_floods(t: Target) -> Result:
    """`user:typing` as fast as one socket sends, then joins and leaves (at any scale more than the default
    burst of 40 events): what is over the event rate is answered `rate_limited`, the rest as usual."""
    room = "room:lobby:redteam-5"
    async with connected(t, t.auth()) as (sio, _):
        await sio.call("join", room)
        typing = [
            await sio.emit("user:typing", {"room": room, "typing": n % 2 == 0}) for n in range(max(100, t.count(2000)))
        ]
        churn = [await sio.emit("leave" if n % 2 == 0 else "join", room) for n in range(max(50, t.count(500)))]
        answers = await acks_within(typing + churn, ATTACK_SECONDS - 5)
    parts = [answers[: len(typing)], answers[len(typing) :]]
    counts = [(sum(a == RATE_LIMITED for a in part), sum(a is None for a in part), len(part)) for part in parts]
    text = [f"{limited:,} of {total:,} rate_limited, {missing:,} unanswered" for limited, missing, total in counts]
    return f"typing: {text[0]}; join/leave: {text[1]}", all(limited and not missing for limited, missing, _ in counts)


async def reserved_event(t: Target) -> Result:
    """`42["disconnect"]`, a reserved event's name, from a client: answered `unknown_event` when it asks
    for an ack, and the socket stays a member of its room (a push to the room reaches it)."""
    async with connected(t, t.auth()) as (sio, _):
        await sio.call("join", "room:lobby:redteam-6")
        await sio.ws.send_str('42["disconnect"]')
        answer = await sio.call("disconnect")
        await t.push("redteam-6", n=6)
        served = (await sio.next_message())[0].get("n") == 6
    ok = answer == {"ok": False, "error": "unknown_event"} and served
    return f"ack {answer}; {'still' if served else 'no longer'} gets its room's pushes", ok


async def unauthenticated_bodies(t: Target) -> Result:
    """Bodies without the service key: JSON nested 1,000 deep, a key that is a lone surrogate, a body
    abandoned midway: each a 4xx (the abandoned one unanswered), never a 500; the API serves after them."""
    nested, _ = await t.post("/api/channel", b'{"x": ' + b"[" * 1000 + b"]" * 1000 + b"}")
    surrogate, _ = await t.post("/api/channel", b'{"token": "\\ud800", "channel_id": "redteam-7"}')
    _, writer = await t.tcp()
    try:
        writer.write(b"POST /api/channel HTTP/1.1\r\nHost: redteam\r\nContent-Length: 1000\r\n\r\n{")
        await writer.drain()
    finally:
        writer.transport.abort()
    after, _ = await t.push("redteam-7", n=7)
    ok = 400 <= nested < 500 and 400 <= surrogate < 500 and after == 200
    return f"nested: HTTP {nested}; lone surrogate key: HTTP {surrogate}; after an abandoned body: {after}", ok


async def recovery_offsets(t: Target) -> Result:
    """CONNECTs with someone else's pid and offset `0-0` or `0`: each a fresh session whose first push is
    one sent after it began (the owner's is not replayed to it); the owner is served on."""
    seen: list[str] = []
    fresh: list[bool] = []
    async with connected(t, t.auth()) as (owner, reply):
        await owner.call("join", "room:lobby:redteam-8")
        await t.push("redteam-8", n=1)
        await owner.next_message()
        for offset in ("0-0", "0"):
            sub = t.user()
            async with connected(t, {**t.auth(sub), "pid": reply["pid"], "offset": offset}) as (thief, answer):
                await t.post("/api/user", json.dumps({"token": t.service_key, "user_id": sub, "n": 2}).encode())
                first = (await thief.next_message())[0].get("n")
            fresh.append(answer["sid"] != reply["sid"] and first == 2)
            seen.append(f"{offset}: {'a fresh session' if fresh[-1] else 'NOT a fresh session'}, first push n={first}")
        await t.push("redteam-8", n=3)
        back = (await owner.next_message())[0].get("n")
    return "; ".join(seen) + f"; the owner's next push n={back}", all(fresh) and back == 3


async def tiny_frames(t: Target) -> Result:
    """100,000 tiny frames from one socket (unsolicited pongs), an ack asked for every hundredth: the
    server reads them at its own pace (acks come, slowly) or closes the connection, and stays up."""
    every = max(2, t.count(100_000) // 100)
    marks = t.count(100_000) // every
    frames = b"".join(client_frame(b"3") * (every - 1) + client_frame(b"42%d%s" % (n, MARK)) for n in range(marks))
    started = time.monotonic()
    acks, closed = await flood(t, frames, marks - 1, min(10.0, max(1.0, 10 * t.scale)))
    read = (max(acks) + 1) * every if acks else 0
    rate = read / (max(acks.values()) - started) if acks else 0.0
    what = "closed the connection" if closed else "kept it open"
    return f"read about {read:,} of {marks * every:,} frames ({rate:,.0f} a second) and {what}", closed or bool(acks)


def _made_up(rng: random.Random, count: int) -> bytes:
    """`count` frames of made-up Engine.IO and Socket.IO packets (none that leaves the namespace)."""
    kinds = ["", "0", "2", "3", "5", "6", "7", "x", "4", "42", "43", "44", "45", "46", "47", "48", "42/x,"]
    chars = 'ab[]{}",:-/\\ 0123456789\u00e9\u20ac\U0001f600\x00'
    packets = (
        rng.choice(kinds) + rng.choice('[{"x -') + "".join(rng.choices(chars, k=rng.randrange(40)))
        for _ in range(count)
    )
    return b"".join(client_frame(packet.encode()) for packet in packets)


async def log_floods(t: Target) -> Result:
    """What once flooded the log: one-byte binary frames (the first closes the connection), made-up
    packets (100 to a connection, then an ack asked for), websocket pings, an over-long request line
    carrying a token. The log is read elsewhere; here the server closes the binary flood, answers or
    closes after the pings, refuses the request line with a 4xx, and stays up."""
    _, binary = await flood(t, client_frame(b"\x04", BINARY) * t.count(10_000), None, WAIT)
    rng, batches = random.Random(10), Counter[str]()
    for _ in range(t.count(20)):
        acks, closed = await flood(t, _made_up(rng, 100) + client_frame(b"420" + MARK), 0, 2.0)
        batches["answered" if acks else "closed" if closed else "silent"] += 1
    pings = client_frame(b"redteam", PING) * t.count(2000) + client_frame(b"420" + MARK)
    acks, closed = await flood(t, pings, 0, ATTACK_SECONDS / 2)
    reader, writer = await t.tcp()
    try:
        writer.write(b"GET /%s?token=%s HTTP/1.1\r\n\r\n" % (b"a" * 20_000, t.auth()["token"].encode()))
        line = (await asyncio.wait_for(reader.readline(), WAIT)).split()
    finally:
        writer.transport.abort()
    status = int(line[1]) if len(line) > 1 and line[1].isdigit() else 0
    after_pings = "answered" if acks else "closed" if closed else "neither answered nor closed"
    answer = f"binary: {'closed' if binary else 'NOT closed'}; made-up packets: {dict(batches)}; "
    answer += f"pings: {after_pings}; over-long request line: HTTP {status}"
    return answer, binary and bool(acks or closed) and 400 <= status < 500


async def recovery_log_bytes(t: Target) -> Result:
    """64 KB pushes en masse into a room while its member is away: the API answers each 200 (or 503 with
    Retry-After), never 500; the recovery log stays bounded in bytes (PUSH_RECOVERY_MAX_BYTES): the
    member, back from before them, gets every one of them or a fresh session, never a part."""
    auth, room = t.auth(), "room:lobby:redteam-11"
    async with connected(t, auth) as (sio, reply):
        await sio.call("join", room)
        await t.push("redteam-11", n=0)
        _, offset = await sio.next_message()
    numbers, accepted, statuses = iter(range(1, t.count(500) + 1)), set(), Counter[str]()

    async def pusher() -> None:
        for n in numbers:
            status = _api(*await t.push("redteam-11", n=n, blob=BLOB))
            statuses[status] += 1
            if status == "200":
                accepted.add(n)

    await asyncio.gather(*(pusher() for _ in range(8)))
    api = f"API {dict(statuses)}; back from before them: "
    api_ok = set(statuses) <= API_OK
    if offset is None:
        return api + "no offset to recover from (recovery off?)", False
    async with connected(t, {**auth, "pid": reply["pid"], "offset": offset}) as (sio, again):
        got: list[Any] = []
        while again["sid"] == reply["sid"] and len(got) < len(accepted):
            if (n := (await sio.next_message())[0].get("n")) is None:
                break
            got.append(n)
    if again["sid"] != reply["sid"]:
        return api + "a fresh session (the log had dropped them)", api_ok
    return api + f"recovered, {len(got)} of {len(accepted)} replayed", api_ok and sorted(got) == sorted(accepted)


ATTACKS: tuple[Callable[[Target], Awaitable[Result]], ...] = (
    *(binary_attachments, polling_never_polls, half_heads, lone_surrogates, presence_floods, reserved_event),
    *(unauthenticated_bodies, recovery_offsets, tiny_frames, log_floods, recovery_log_bytes),
)


async def attack_all(
    url: str, service_key: str, jwt_secret: str, *, scale: float = 1.0, log: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Run every attack in turn against the server at `url`, each within ATTACK_SECONDS and all within
    TOTAL_SECONDS; `scale` multiplies the counts. One dict an attack: its name (`attack`), when it began
    (`started_s`, from the start of the run) and how long it took (`seconds`), what the server did
    (`answer`), whether that is what the contract says (`ok`), and whether `GET /api/health` answered 200
    right after it (`healthy`).

    An attack that raises, or runs out of time, is reported as not ok with what it raised; the next runs.
    """
    began = time.monotonic()
    results: list[dict[str, Any]] = []
    # No keep-alive: a pooled connection the server closed after its head timeout would fail a request.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=ATTACK_SECONDS)) as http:
        target = Target(url, service_key, jwt_secret, scale, http)
        for number, attack in enumerate(ATTACKS, 1):
            name = f"{number} {attack.__name__.replace('_', ' ')}"
            started = time.monotonic()
            limit = max(0.0, min(ATTACK_SECONDS, TOTAL_SECONDS - (started - began)))
            try:
                async with asyncio.timeout(limit) as bound:
                    answer, ok = await attack(target)
            except Exception as exc:  # reported as this attack's answer; the others still run
                ran_over = isinstance(exc, TimeoutError) and bound.expired()
                answer = f"ran out of its {limit:.0f} s" if ran_over else f"{type(exc).__name__}: {exc}".rstrip(": ")
                ok = False
            healthy = await target.healthy()
            seconds = time.monotonic() - started
            result = {"attack": name, "started_s": round(started - began, 2), "seconds": round(seconds, 2)}
            results.append({**result, "answer": answer, "ok": ok, "healthy": healthy})
            if log is not None:
                verdict = ("ok" if ok else "NOT OK") + ("" if healthy else ", NOT HEALTHY")
                log(f"red team {name}: {answer} ({verdict}, {seconds:.1f} s)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redteam", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server, http://127.0.0.1:PORT")
    parser.add_argument("--key", required=True, help="its service key (PUSH_SERVICE_KEY)")
    parser.add_argument("--secret", required=True, help="its JWT secret (PUSH_JWT_SECRET)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every count (default 1)")
    args = parser.parse_args(argv)
    results = asyncio.run(
        attack_all(args.url, args.key, args.secret, scale=args.scale, log=lambda line: print(line, file=sys.stderr))
    )
    print(json.dumps(results, indent=2))
    return 0 if all(r["ok"] and r["healthy"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
