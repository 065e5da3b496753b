"""Connecting: every refusal code, JWT variants, the token in the query, the personal room."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import HMACAlgorithm

from .conftest import SECRET, Client, make_token


async def test_missing_token_is_refused_with_token_missing(server, client_factory):
    assert await client_factory().refused(server) == {"code": "token_missing"}


async def test_garbage_token_is_token_invalid(server, client_factory):
    assert await client_factory().refused(server, "not-a-jwt") == {"code": "token_invalid"}


async def test_expired_token_is_told_apart_from_invalid(server, client_factory):
    assert await client_factory().refused(server, make_token(ttl=-10)) == {"code": "token_expired"}


async def test_wrong_signature_is_token_invalid(server, client_factory):
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, "another-secret-of-enough-length!!", "HS256")
    assert await client_factory().refused(server, token) == {"code": "token_invalid"}


async def test_a_remembered_token_is_refused_once_it_expires_and_only_its_exact_bytes_are_remembered(
    server, client_factory
):
    expires = int(time.time()) + 2
    token = make_token(ttl=expires - time.time())
    first = client_factory()
    await first.connect(server, token)  # verified, and remembered
    await first.close()
    head, signature = token.rsplit(".", 1)
    tampered = f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"  # its first 6 bits changed
    assert await client_factory().refused(server, tampered) == {"code": "token_invalid"}
    again = client_factory()
    await again.connect(server, token)  # from memory
    await again.close()
    for _ in range(40):  # until the clock passes its exp: at most 4 s
        if time.time() > expires:
            break
        await asyncio.sleep(0.1)
    assert await client_factory().refused(server, token) == {"code": "token_expired"}


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 9999999999},  # no sub
        {"sub": "alice"},  # no exp
        {"sub": "not a valid id!", "exp": 9999999999},
        {"sub": "alice", "exp": 9999999999, "rooms": "room:*"},  # rooms not a list
    ],
)
async def test_token_without_required_claims_is_token_invalid(server, client_factory, claims):
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert await client_factory().refused(server, token) == {"code": "token_invalid"}


async def test_alg_none_and_unconfigured_algorithms_are_refused(server, client_factory):
    unsigned = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, None, algorithm="none")
    assert await client_factory().refused(server, unsigned) == {"code": "token_invalid"}
    hs512 = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512")
    assert await client_factory().refused(server, hs512) == {"code": "token_invalid"}


async def test_token_in_query_parameter_is_accepted(server, client_factory):
    client = client_factory()
    await client.sio.connect(f"{server.url}?token={make_token('bob')}", transports=["websocket"], wait_timeout=5)
    assert client.sio.connected


async def test_connect_with_long_polling_transport(make_server, client_factory):
    # A short ping interval only to end quickly: python-engineio leaves the client's pending poll
    # unanswered after it sends CLOSE, so its disconnect (and the server's cleanup) waits for the next ping.
    server = await make_server(ping_interval=1, ping_timeout=1)
    client = client_factory()
    await client.connect(server, make_token(rooms=["room:*"]), transports=["polling"])
    assert await client.join("room:lobby:c1") == {"ok": True, "room": "room:lobby:c1"}
    status, _ = await server.push("/api/channel", channel_id="c1", n=1)
    assert status == 200
    assert (await client.next_msg())["n"] == 1


async def test_audience_and_issuer_are_checked_when_configured(make_server, client_factory):
    server = await make_server(jwt_audience="linen", jwt_issuer="https://linen.dev")
    good = make_token(aud="linen", iss="https://linen.dev")
    await client_factory().connect(server, good)
    assert await client_factory().refused(server, make_token(aud="other", iss="https://linen.dev")) == {
        "code": "token_invalid"
    }
    assert await client_factory().refused(server, make_token(aud="linen")) == {"code": "token_invalid"}


def _pem(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize(
    ("algorithm", "private_key"),
    [
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
    ],
)
async def test_public_key_algorithms(make_server, client_factory, algorithm, private_key):
    server = await make_server(jwt_secret=None, jwt_public_key=_pem(private_key), jwt_algorithms=(algorithm,))
    claims = {"sub": "carol", "exp": int(time.time()) + 60, "rooms": ["room:lobby:*"]}
    client = client_factory()
    await client.connect(server, jwt.encode(claims, private_key, algorithm=algorithm))
    assert await client.join("room:lobby:x") == {"ok": True, "room": "room:lobby:x"}
    # An HS256 token whose HMAC secret is the public key's PEM text must never pass (key confusion).
    forged = _hs256_signed_with(claims, _pem(private_key))
    assert await client_factory().refused(server, forged) == {"code": "token_invalid"}


def _hs256_signed_with(claims: dict, secret: str) -> str:
    """An HS256 JWT made by hand: PyJWT refuses a PEM key as an HMAC secret, an attacker does not."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + part(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)


def test_the_forged_token_is_what_a_confused_verifier_would_take():
    # The forgery is only a test if PyJWT's own HMAC verifies it with the PEM as its key, as it would in
    # a server that let the token's header pick the algorithm.
    pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    header, payload, signature = _hs256_signed_with({"sub": "carol", "exp": 9999999999}, pem).split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    hs256 = HMACAlgorithm(HMACAlgorithm.SHA256)
    assert hs256.verify(f"{header}.{payload}".encode(), pem.encode(), raw)
    assert jwt.get_unverified_header(f"{header}.{payload}.{signature}")["alg"] == "HS256"


async def test_personal_room_is_joined_on_connect(server, connect):
    client: Client = await connect(server, "dave")
    status, _ = await server.push("/api/user", user_id="dave", is_mention=True, mention_type="user")
    assert status == 200
    assert await client.next_msg() == {"user_id": "dave", "is_mention": True, "mention_type": "user"}


async def test_server_keeps_serving_after_refusals(server, client_factory, connect):
    for token in (None, "garbage", make_token(ttl=-5)):
        await client_factory().refused(server, token)
    client = await connect(server)
    assert await client.join("room:lobby:after") == {"ok": True, "room": "room:lobby:after"}


async def _polling_handshake(server, origin: str) -> tuple[int, str | None]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/socket.io/?EIO=4&transport=polling", headers={"Origin": origin}) as resp,
    ):
        return resp.status, resp.headers.get("Access-Control-Allow-Origin")


async def test_cors_is_same_origin_by_default(server):
    assert (await _polling_handshake(server, "https://evil.example"))[0] == 400
    assert (await _polling_handshake(server, server.url))[0] == 200


async def test_cors_origins_are_configurable(make_server):
    server = await make_server(cors_origins=("https://linen.dev",))
    assert await _polling_handshake(server, "https://linen.dev") == (200, "https://linen.dev")
    assert (await _polling_handshake(server, "https://evil.example"))[0] == 400
    anyone = await make_server(cors_origins=("*",))
    assert (await _polling_handshake(anyone, "https://anywhere.example"))[0] == 200
