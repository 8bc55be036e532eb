"""The framing on the link between the state process and a connection process (`--io-processes`,
server/connprocs.py and server/connproc.py): sans-io, so both ends and the tests share it.

Why a framing of our own: the link carries many client connections' bytes at once, and the
point of connection processes is that everything one side has for the other in a loop turn
goes in one write. A frame is a 9-byte header — type (u8), connection id (u32), payload
length (u32), big-endian — then the payload:

- connection process → state process: OPEN (payload: the client's host), DATA (bytes the
  client sent), EOF (the client is gone: it closed, broke, or stopped reading its replies);
- state process → connection process: DATA (replies), CLOSE (send what is queued, then
  close), CREDIT (u32: how many of the client's bytes the state process consumed; a
  connection process reads a client only while fewer than `WINDOW` of its bytes are
  unconsumed, so a client that sends faster than it is served is held back by TCP, as in the
  in-process mode), STOP (id 0: stop accepting, a graceful stop began).
"""

from __future__ import annotations

import struct

OPEN, DATA, EOF, CLOSE, CREDIT, STOP = 1, 2, 3, 4, 5, 6
_TYPES = frozenset((OPEN, DATA, EOF, CLOSE, CREDIT, STOP))
_HEADER = struct.Struct(">BII")
HEADER_SIZE = _HEADER.size
_CREDIT = struct.Struct(">I")
#: a client's bytes a connection process forwards before the state process has consumed them
WINDOW = 1 << 20
#: a payload larger than this is a broken link (no frame is larger than one read of a client,
#: or one connection's replies of a turn, which a 16 MiB line bounds)
MAX_PAYLOAD = 1 << 30


class LinkError(Exception):
    """The other end sent what no version of this module writes: the link is broken."""


def frame(kind: int, conn_id: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """One frame, header and payload."""
    return _HEADER.pack(kind, conn_id, len(payload)) + payload


def credit(conn_id: int, consumed: int) -> bytes:
    return frame(CREDIT, conn_id, _CREDIT.pack(consumed))


def credit_amount(payload: bytes) -> int:
    if len(payload) != _CREDIT.size:
        raise LinkError(f"a CREDIT frame of {len(payload)} bytes")
    return int(_CREDIT.unpack(payload)[0])


class FrameReader:
    """Turns the link's byte stream, in whatever pieces it arrives, into frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """The complete frames `data` finishes, as (type, connection id, payload); LinkError
        on a frame no writer makes (the rest of the stream is then meaningless)."""
        buffer = self._buffer
        buffer += data
        frames = []
        start = 0
        while len(buffer) - start >= HEADER_SIZE:
            kind, conn_id, size = _HEADER.unpack_from(buffer, start)
            if kind not in _TYPES or size > MAX_PAYLOAD:
                raise LinkError(f"frame type {kind}, payload {size} bytes")
            end = start + HEADER_SIZE + size
            if len(buffer) < end:
                break
            frames.append((kind, conn_id, bytes(buffer[start + HEADER_SIZE:end])))
            start = end
        del buffer[:start]
        return frames
