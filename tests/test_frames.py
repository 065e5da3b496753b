"""The RFC 6455 codec of `sio_push.transport.frames`, with bytes alone: what a client's frames make of it."""

from __future__ import annotations

import os

import pytest

from sio_push.transport.frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    INVALID_DATA,
    MAX_FRAGMENTS,
    NO_STATUS,
    NORMAL,
    PING,
    PONG,
    PROTOCOL_ERROR,
    TEXT,
    TOO_BIG,
    Close,
    Event,
    Parser,
    Ping,
    Pong,
    ProtocolError,
    close_frame,
    ws_frame,
)

LIMIT = 1000


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    """A frame as a client sends it: masked, unless told otherwise."""
    size = len(payload)
    bit = 0x80 if masked else 0
    if size < 126:
        length = bytes((size | bit,))
    elif size < 1 << 16:
        length = bytes((126 | bit,)) + size.to_bytes(2, "big")
    else:
        length = bytes((127 | bit,)) + size.to_bytes(8, "big")
    head = bytes(((0x80 if fin else 0) | rsv | opcode,)) + length
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse(*frames: bytes) -> tuple[list[Event], bytes, Parser]:
    parser = Parser(LIMIT)
    events = parser.receive_data(b"".join(frames))
    return events, parser.data_to_send(), parser


def test_ws_frame_uses_the_three_length_forms():
    assert ws_frame(b"hi") == b"\x81\x02hi"
    assert ws_frame(b"x" * 126, BINARY)[:4] == b"\x82\x7e\x00\x7e"
    assert ws_frame(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")
    assert close_frame(1009) == b"\x88\x02\x03\xf1"


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 126, 65535, 65536])
def test_masked_messages_of_every_length_form_are_unmasked(size):
    payload = os.urandom(size)
    text = "é" * (size // 2) + "a" * (size % 2)
    parser = Parser(1 << 20)
    assert parser.receive_data(client_frame(BINARY, payload) + client_frame(TEXT, text.encode())) == [payload, text]
    assert parser.data_to_send() == b""


def test_bytes_arriving_one_at_a_time_make_the_same_messages():
    data = client_frame(TEXT, b"first") + client_frame(BINARY, b"x" * 300) + client_frame(TEXT, b"")
    parser = Parser(LIMIT)
    events = []
    for at in range(len(data)):
        events += parser.receive_data(data[at : at + 1])
    assert events == ["first", b"x" * 300, ""]


def test_fragments_with_control_frames_between_them():
    events, out, _ = parse(
        client_frame(TEXT, b"frag", fin=False),
        client_frame(PING, b"are you there"),
        client_frame(CONTINUATION, b"men", fin=False),
        client_frame(PONG, b"unasked"),
        client_frame(CONTINUATION, b"ted"),
    )
    assert events == [Ping(b"are you there"), Pong(b"unasked"), "fragmented"]
    assert out == ws_frame(b"are you there", PONG)


def test_utf8_split_across_fragments_is_whole_text():
    encoded = "naïve €".encode()
    cut = encoded.index("€".encode()) + 1  # inside the euro sign
    events, _, _ = parse(client_frame(TEXT, encoded[:cut], fin=False), client_frame(CONTINUATION, encoded[cut:]))
    assert events == ["naïve €"]


def test_binary_fragments_are_joined_as_bytes():
    events, _, _ = parse(client_frame(BINARY, b"\xff\x00", fin=False), client_frame(CONTINUATION, b"\xfe"))
    assert events == [b"\xff\x00\xfe"]


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([client_frame(TEXT, b"40", masked=False)], PROTOCOL_ERROR),
        ([client_frame(TEXT, b"40", rsv=0x40)], PROTOCOL_ERROR),
        ([client_frame(TEXT, b"40", rsv=0x10)], PROTOCOL_ERROR),
        ([client_frame(0x3, b"x")], PROTOCOL_ERROR),
        ([client_frame(0xB, b"x")], PROTOCOL_ERROR),
        ([client_frame(CONTINUATION, b"x")], PROTOCOL_ERROR),
        ([client_frame(PING, b"x" * 126)], PROTOCOL_ERROR),
        ([client_frame(PING, b"x", fin=False)], PROTOCOL_ERROR),
        ([client_frame(TEXT, b"a", fin=False), client_frame(TEXT, b"b")], PROTOCOL_ERROR),
        ([client_frame(TEXT, b"a", fin=False), client_frame(BINARY, b"b")], PROTOCOL_ERROR),
        ([bytes((0x81, 0xFF)) + (1 << 63).to_bytes(8, "big")], PROTOCOL_ERROR),
        ([client_frame(TEXT, b"4\xff\xfe")], INVALID_DATA),
        ([client_frame(TEXT, b"4\xe2\x82", fin=False), client_frame(CONTINUATION, b"")], INVALID_DATA),
        ([bytes((0x81, 0xFF)) + (1 << 40).to_bytes(8, "big")], TOO_BIG),
        ([client_frame(BINARY, b"x" * (LIMIT + 1))], TOO_BIG),
        ([client_frame(TEXT, b"4" * 600, fin=False), client_frame(CONTINUATION, b"2" * 401)], TOO_BIG),
    ],
    ids=[
        "unmasked",
        "rsv1",
        "rsv3",
        "reserved-data-opcode",
        "reserved-control-opcode",
        "orphan-continuation",
        "long-control",
        "fragmented-control",
        "text-inside-fragmented",
        "binary-inside-fragmented",
        "length-with-top-bit",
        "bad-utf8",
        "utf8-cut-short",
        "huge-length",
        "frame-over-limit",
        "fragments-over-limit",
    ],
)
def test_each_protocol_error_closes_with_its_code_and_stops_reading(frames, code):
    events, out, parser = parse(*frames)
    assert len(events) == 1 and isinstance(events[0], ProtocolError) and events[0].code == code
    assert out == close_frame(code)
    assert parser.closed
    assert parser.receive_data(client_frame(TEXT, b"after")) == []
    assert parser.data_to_send() == b""


def test_a_long_control_frame_is_refused_from_its_header_alone():
    events, out, _ = parse(bytes((0x89, 0x80 | 126)) + (60000).to_bytes(2, "big"))
    assert events == [ProtocolError(PROTOCOL_ERROR, events[0].what)] and out == close_frame(PROTOCOL_ERROR)


def test_an_oversized_frame_is_refused_before_its_payload_arrives():
    events, out, _ = parse(bytes((0x82, 0x80 | 126)) + (LIMIT + 1).to_bytes(2, "big"))
    assert isinstance(events[0], ProtocolError) and events[0].code == TOO_BIG and out == close_frame(TOO_BIG)


def test_a_message_of_exactly_the_limit_in_fragments_is_taken():
    events, _, _ = parse(client_frame(TEXT, b"a" * 500, fin=False), client_frame(CONTINUATION, b"b" * 500))
    assert events == ["a" * 500 + "b" * 500]


def test_fragment_count_is_bounded():
    frames = [client_frame(TEXT, b"", fin=False)] + [client_frame(CONTINUATION, b"", fin=False)] * (MAX_FRAGMENTS - 2)
    events, _, _ = parse(*frames, client_frame(CONTINUATION, b"ok"))
    assert events == ["ok"]  # MAX_FRAGMENTS frames
    events, out, _ = parse(*frames, client_frame(CONTINUATION, b"", fin=False), client_frame(CONTINUATION, b""))
    assert isinstance(events[0], ProtocolError) and out == close_frame(TOO_BIG)


@pytest.mark.parametrize(
    ("payload", "event", "answer"),
    [
        (b"", Close(NO_STATUS, ""), NORMAL),
        ((1000).to_bytes(2, "big") + b"bye", Close(1000, "bye"), NORMAL),
        ((1001).to_bytes(2, "big") + "café".encode(), Close(1001, "café"), 1001),
        ((4000).to_bytes(2, "big"), Close(4000, ""), 4000),
        ((3000).to_bytes(2, "big"), Close(3000, ""), 3000),
        ((1014).to_bytes(2, "big"), Close(1014, ""), 1014),
        (b"\x03", PROTOCOL_ERROR, PROTOCOL_ERROR),
        ((1005).to_bytes(2, "big"), PROTOCOL_ERROR, PROTOCOL_ERROR),
        ((1006).to_bytes(2, "big"), PROTOCOL_ERROR, PROTOCOL_ERROR),
        ((1015).to_bytes(2, "big"), PROTOCOL_ERROR, PROTOCOL_ERROR),
        ((999).to_bytes(2, "big"), PROTOCOL_ERROR, PROTOCOL_ERROR),
        ((2999).to_bytes(2, "big"), PROTOCOL_ERROR, PROTOCOL_ERROR),
        ((5000).to_bytes(2, "big"), PROTOCOL_ERROR, PROTOCOL_ERROR),
        ((1001).to_bytes(2, "big") + b"\xff", INVALID_DATA, INVALID_DATA),
    ],
    ids=[
        "no-code",
        "normal",
        "going-away-utf8-reason",
        "private",
        "registered",
        "last-defined",
        "one-byte",
        "reserved-1005",
        "reserved-1006",
        "reserved-1015",
        "below-range",
        "unassigned",
        "above-range",
        "bad-reason",
    ],
)
def test_client_close_frames_are_answered_by_the_rules(payload, event, answer):
    events, out, parser = parse(client_frame(CLOSE, payload), client_frame(TEXT, b"after the close"))
    if isinstance(event, Close):
        assert events == [event]
    else:
        assert len(events) == 1 and isinstance(events[0], ProtocolError) and events[0].code == event
    assert out == close_frame(answer)
    assert parser.closed


def test_messages_before_a_close_are_kept_and_the_close_is_answered_once():
    events, out, parser = parse(client_frame(TEXT, b"last words"), client_frame(CLOSE, b""))
    assert events == ["last words", Close(NO_STATUS, "")]
    parser.send_close(NORMAL)
    assert out == close_frame(NORMAL) and parser.data_to_send() == b""


def test_our_close_is_sent_once_and_ends_reading():
    parser = Parser(LIMIT)
    assert parser.receive_data(client_frame(TEXT, b"a", fin=False) + client_frame(CONTINUATION, b"", fin=False)) == []
    parser.send_close(1008)
    parser.send_close(1000)
    assert parser.data_to_send() == close_frame(1008)
    assert parser.receive_data(client_frame(CONTINUATION, b"c")) == []


def test_each_ping_gets_its_pong_in_order():
    events, out, _ = parse(client_frame(PING, b"1"), client_frame(TEXT, b"m"), client_frame(PING, b""))
    assert events == [Ping(b"1"), "m", Ping(b"")]
    assert out == ws_frame(b"1", PONG) + ws_frame(b"", PONG)
