"""Request framing without I/O: a byte stream in, `Command`s out.

Clients send one command per line (protocol/spec.md §1). Keeping framing apart from sockets
lets the same code run under trio, in tests, in a fuzzer and in a benchmark, and lets us
bound what a hostile peer can make us buffer.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import FaktoryPyError


class ProtocolError(FaktoryPyError):
    """The peer broke the protocol; ``str(e)`` is the text that goes after ``-ERR ``."""


class Command(NamedTuple):
    """One request line split at its first space.

    The verb keeps its case because Faktory matches verbs case-sensitively (``push`` is an
    unknown command). The argument is everything after the first space, since JSON
    arguments from Python clients contain spaces of their own. (A NamedTuple: every command
    makes one, and `next_command` builds it with `tuple.__new__`, in a third of a frozen
    dataclass's time.)
    """

    verb: str
    arg: str


_new_command = tuple.__new__


class LineReader:
    """Splits a byte stream into lines, ending each at ``\\n`` and dropping a ``\\r`` before it.

    Call :meth:`receive_data` with each chunk read from the socket (``b""`` for EOF), then
    :meth:`next_command` until it returns None. Draining after every chunk keeps the buffer
    within ``max_line`` plus one chunk; a longer line is a ProtocolError, after which the
    reader drops its buffer and raises the same error on any further use, so a peer cannot
    make us hold more than that however it sends. (`max_line` is the server's setting,
    config's `Config.max_line`, passed in: wire never reads configuration.)
    """

    __slots__ = ("_buf", "_scanned", "_eof", "_failed", "_max_line")

    def __init__(self, max_line: int) -> None:
        self._buf = bytearray()
        # Bytes at the front of _buf already known to hold no b"\n": each byte is searched
        # once, so many small chunks forming one long line cost O(total), not O(n²).
        self._scanned = 0
        self._eof = False
        self._failed: ProtocolError | None = None
        self._max_line = max_line

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means the peer closed its side."""
        if self._failed is not None:
            raise self._failed
        if not data:
            self._eof = True
        elif self._eof:
            raise RuntimeError("LineReader received data after EOF")
        else:
            self._buf += data

    @property
    def backlogged(self) -> bool:
        """More bytes wait unread than the longest line may take. Draining after every chunk
        never gets here; only a peer that pipelines behind a command that waits (a FETCH
        waiting for a job) does, and its reader stops reading it until that command is
        answered (the kernel's buffers and TCP's window hold the rest), so the buffer stays
        within ``max_line`` plus one chunk then too."""
        return len(self._buf) > self._max_line

    @property
    def at_eof(self) -> bool:
        """True once EOF has arrived and no complete line is left (a partial one is dropped,
        as Faktory's line reader does)."""
        return self._eof and self._find_newline() < 0

    def next_line(self) -> bytes | None:
        """The next line without its terminator, or None until more data arrives."""
        line = self._take_line()
        return None if line is None else bytes(line)

    def next_command(self) -> Command | None:
        """The next request line as a Command, or None until more data arrives."""
        line = self._take_line()
        if line is None:
            return None
        verb, _, arg = line.decode("utf-8", errors="replace").partition(" ")
        return _new_command(Command, (verb, arg))

    def _take_line(self) -> bytearray | None:
        """The next line without its terminator, taken out of the buffer (a copy of its
        own, which `next_command` decodes without copying it to bytes first), or None.
        (It runs twice per command: the newline search is inlined, and a failed reader's
        buffer is empty, so the failure is looked at only then.)"""
        buf = self._buf
        if not buf:  # (the usual answer once a read's commands are taken)
            if self._failed is not None:
                raise self._failed
            return None
        end = buf.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(buf)
            # The line's content may legitimately be max_line bytes followed by b"\r".
            if len(buf) > self._max_line + 1:
                self._fail()
            return None
        content_end = end - 1 if end and buf[end - 1] == 0x0D else end
        if content_end > self._max_line:
            self._fail()
        line = buf[:content_end]
        # CPython drops a bytearray's prefix by moving its start, not by copying the rest.
        del buf[: end + 1]
        self._scanned = 0
        return line

    def _find_newline(self) -> int:
        end = self._buf.find(b"\n", self._scanned)
        self._scanned = len(self._buf) if end < 0 else end
        return end

    def _fail(self) -> None:
        self._buf = bytearray()
        self._scanned = 0
        self._failed = ProtocolError(f"line too long (max {self._max_line} bytes)")
        raise self._failed
