"""Framing: length-prefixed msgpack maps, on blocking sockets and asyncio streams."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest

from ember.runtime import protocol
from ember.runtime.protocol import (
    FrameSocket,
    ProtocolError,
    decode,
    encode,
    read_frame,
    read_frame_async,
)

MESSAGE = {"t": protocol.INVOKE, "id": "r1", "payload": b"\x00\xff", "deadline": 1.5,
           "nested": {"list": [1, "two", None]}}


def test_round_trip_keeps_bytes_and_text_apart() -> None:
    frame = encode(MESSAGE)
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert decode(frame[4:]) == MESSAGE
    assert isinstance(decode(frame[4:])["payload"], bytes)


@pytest.mark.parametrize("body", [b"\x93\x01\x02\x03", b"\x81\xa1x\x01", b"\xc1"])
def test_decode_refuses_what_is_not_a_typed_map(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(body)


def test_oversized_frames_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "MAX_FRAME_BYTES", 64)
    with pytest.raises(ProtocolError, match="over the 64 limit"):
        encode({"t": "x", "blob": b"x" * 100})
    left, right = socket.socketpair()
    with left, right:
        left.sendall(struct.pack(">I", 1000))
        with pytest.raises(ProtocolError):
            read_frame(right)


def test_blocking_sockets_and_end_of_stream() -> None:
    left, right = socket.socketpair()
    with left, right:
        sender = FrameSocket(left)
        # Many threads sending at once never interleave their frames.

        def send_many(n: int) -> None:
            for _ in range(20):
                sender.send({"t": "log", "n": n, "pad": b"x" * 5000})

        threads = [threading.Thread(target=send_many, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        received = [read_frame(right) for _ in range(80)]
        for thread in threads:
            thread.join()
        assert sorted(m["n"] for m in received if m) == sorted(list(range(4)) * 20)
        left.shutdown(socket.SHUT_WR)
        assert read_frame(right) is None


def test_truncated_frame_is_an_error() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(encode(MESSAGE)[:-3])
        left.shutdown(socket.SHUT_WR)
        with pytest.raises(ProtocolError, match="middle of a frame"):
            read_frame(right)


def test_async_streams() -> None:
    async def scenario() -> None:
        left, right = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=right)
        try:
            left.sendall(encode(MESSAGE) + encode({"t": "stop"}))
            assert await read_frame_async(reader) == MESSAGE
            assert await read_frame_async(reader) == {"t": "stop"}
            protocol.write_frame_async(writer, {"t": "ready", "init_ms": 1.0})
            await writer.drain()
            assert read_frame(left) == {"t": "ready", "init_ms": 1.0}
            left.sendall(encode(MESSAGE)[:10])
            left.shutdown(socket.SHUT_WR)
            with pytest.raises(ProtocolError):
                await read_frame_async(reader)
        finally:
            left.close()
            writer.close()
            await writer.wait_closed()

    asyncio.run(scenario())


def test_async_clean_end_of_stream() -> None:
    async def scenario() -> None:
        left, right = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=right)
        left.close()
        assert await read_frame_async(reader) is None
        writer.close()
        await writer.wait_closed()

    asyncio.run(scenario())


def test_a_frame_buffer_takes_whole_frames_wherever_the_reads_cut_them() -> None:
    messages = [{"t": "result", "id": str(i), "body": b"x" * i} for i in range(50)]
    stream = b"".join(protocol.encode(m) for m in messages)
    for step in (1, 3, 7, 64, len(stream)):
        frames = protocol.FrameBuffer()
        got = []
        for start in range(0, len(stream), step):
            got += frames.feed(stream[start:start + step])
        assert got == messages
        assert not frames.partial


def test_a_frame_buffer_holds_a_cut_frame_and_refuses_an_oversized_one() -> None:
    frames = protocol.FrameBuffer()
    encoded = protocol.encode({"t": "log", "line": "hello"})
    assert frames.feed(encoded[:-1]) == []
    assert frames.partial
    assert frames.feed(encoded[-1:]) == [{"t": "log", "line": "hello"}]
    with pytest.raises(protocol.ProtocolError, match="over the"):
        protocol.FrameBuffer().feed((protocol.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))


def test_a_buffered_frame_socket_reads_frames_that_arrived_together() -> None:
    left, right = socket.socketpair()
    with left, right:
        reader = FrameSocket(right, buffered=True)
        messages = [{"t": "invoke", "id": str(i)} for i in range(3)]
        left.sendall(b"".join(protocol.encode(m) for m in messages))
        assert [reader.recv() for _ in messages] == messages
        cut = protocol.encode({"t": "invoke", "id": "cut"})
        left.sendall(cut[:-2])
        left.shutdown(socket.SHUT_WR)
        with pytest.raises(ProtocolError, match="middle of a frame"):
            reader.recv()


def test_a_buffered_frame_socket_sees_a_clean_end() -> None:
    left, right = socket.socketpair()
    with left, right:
        reader = FrameSocket(right, buffered=True)
        FrameSocket(left).send({"t": "stop"})
        left.shutdown(socket.SHUT_WR)
        assert reader.recv() == {"t": "stop"}
        assert reader.recv() is None


def test_recv_ready_takes_what_arrived_without_waiting() -> None:
    left, right = socket.socketpair()
    with left, right:
        reader = FrameSocket(right, buffered=True)
        assert reader.recv_ready() == []  # nothing yet: no wait
        first, second = {"t": "http", "id": "1"}, {"t": "ack", "id": "1", "n": 3}
        cut = protocol.encode(second)
        left.sendall(protocol.encode(first) + cut[:3])
        assert reader.recv_ready() == [first]  # the cut frame waits for its rest
        left.sendall(cut[3:])
        assert reader.recv_ready() == [second]
        left.shutdown(socket.SHUT_WR)
        assert reader.recv_ready() == [None]


def test_recv_ready_refuses_a_stream_cut_in_a_frame() -> None:
    left, right = socket.socketpair()
    with left, right:
        reader = FrameSocket(right, buffered=True)
        left.sendall(protocol.encode({"t": "http", "id": "cut"})[:-1])
        assert reader.recv_ready() == []
        left.shutdown(socket.SHUT_WR)
        with pytest.raises(ProtocolError, match="middle of a frame"):
            reader.recv_ready()
