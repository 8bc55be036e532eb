"""The sans-io wire core: line framing, command splitting and reply bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faktory_py import wire
from faktory_py.config import Config
from faktory_py.wire import Command, LineReader, ProtocolError

#: the server's default (the reader itself has none: the server passes its setting)
MAX_LINE = Config.max_line

# Text that can sit inside a line: no line terminators (a trailing "\r" would be stripped).
line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)))
verbs = st.text(st.characters(blacklist_characters=" \r\n", blacklist_categories=("Cs",)))


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


def drain(reader: LineReader) -> list[Command]:
    commands = []
    while (command := reader.next_command()) is not None:
        commands.append(command)
    return commands


def feed(chunks: list[bytes], max_line: int = MAX_LINE) -> tuple[list[Command], str | None]:
    """Feed chunks as a server would (draining after each); return commands and any error."""
    reader = LineReader(max_line)
    commands: list[Command] = []
    try:
        for chunk in [*chunks, b""]:
            reader.receive_data(chunk)
            while (command := reader.next_command()) is not None:
                commands.append(command)
    except ProtocolError as exc:
        return commands, str(exc)
    assert reader.at_eof
    return commands, None


@st.composite
def request_streams(draw: st.DrawFn) -> tuple[bytes, list[Command]]:
    data = b""
    expected = []
    for verb, arg, terminator in draw(
        st.lists(st.tuples(verbs, st.none() | line_text, st.sampled_from([b"\r\n", b"\n"])))
    ):
        line = verb if arg is None else f"{verb} {arg}"
        data += line.encode("utf-8") + terminator
        expected.append(Command(verb, arg or ""))
    return data, expected


@given(request_streams(), st.lists(st.integers(min_value=0)))
def test_chunking_does_not_change_the_commands(stream: tuple[bytes, list[Command]], cuts: list[int]) -> None:
    data, expected = stream
    assert feed([data]) == (expected, None)
    assert feed(split_at(data, cuts)) == (expected, None)


@given(st.lists(st.binary(min_size=1, max_size=64)), st.integers(min_value=0, max_value=100))
def test_arbitrary_bytes_only_ever_raise_protocol_error(chunks: list[bytes], max_line: int) -> None:
    reader = LineReader(max_line)
    try:
        for chunk in chunks:
            reader.receive_data(chunk)
            # Buffer bound: what was kept after the last drain, plus this chunk.
            assert len(reader._buf) <= max_line + 1 + len(chunk)
            while reader.next_line() is not None:
                pass
            assert len(reader._buf) <= max_line + 1
        reader.receive_data(b"")
        drain(reader)
    except ProtocolError as exc:
        assert str(exc) == f"line too long (max {max_line} bytes)"
        assert len(reader._buf) == 0


@given(
    st.lists(st.tuples(st.integers(0, 12), st.sampled_from([b"\r\n", b"\n"]))),
    st.lists(st.integers(min_value=0)),
)
def test_line_limit_does_not_depend_on_chunking(lines: list[tuple[int, bytes]], cuts: list[int]) -> None:
    max_line = 8
    data = b"".join(b"x" * n + terminator for n, terminator in lines)
    whole = feed([data], max_line)
    assert feed(split_at(data, cuts), max_line) == whole
    accepted = 0
    for n, _ in lines:
        if n > max_line:
            break
        accepted += 1
    assert len(whole[0]) == accepted
    assert whole[1] == (None if accepted == len(lines) else "line too long (max 8 bytes)")


def test_line_of_exactly_max_line_is_accepted_with_either_terminator() -> None:
    for terminator in (b"\r\n", b"\n"):
        reader = LineReader(5)
        reader.receive_data(b"ABCDE" + terminator[:-1])
        assert reader.next_line() is None
        reader.receive_data(terminator[-1:])
        assert reader.next_line() == b"ABCDE"


def test_too_long_line_fails_before_its_newline_and_stays_failed() -> None:
    reader = LineReader(max_line=10)
    reader.receive_data(b"PUSH ")
    assert reader.next_command() is None
    reader.receive_data(b"x" * 100)
    with pytest.raises(ProtocolError, match=r"^line too long \(max 10 bytes\)$"):
        reader.next_command()
    assert len(reader._buf) == 0
    with pytest.raises(ProtocolError):
        reader.receive_data(b"\nEND\n")
    with pytest.raises(ProtocolError):
        reader.next_command()


def test_lines_before_a_too_long_one_are_still_delivered() -> None:
    reader = LineReader(max_line=10)
    reader.receive_data(b"INFO\r\n" + b"y" * 50)
    assert reader.next_command() == Command("INFO", "")
    with pytest.raises(ProtocolError):
        reader.next_command()


def test_backlogged_once_more_than_a_line_is_buffered_and_not_after_it_is_taken() -> None:
    """What a reader whose command waits stops reading at (server/ioloop.py, tcp.py)."""
    reader = LineReader(max_line=10)
    reader.receive_data(b"NOOP\r\nNOOP")
    assert not reader.backlogged  # 10 bytes: no more than a line may take
    reader.receive_data(b"\r")
    assert reader.backlogged
    assert reader.next_command() == Command("NOOP", "")
    assert not reader.backlogged


def test_a_long_line_arriving_byte_by_byte_is_scanned_once() -> None:
    reader = LineReader(MAX_LINE)
    for byte in b"PUSH " + b"z" * 1000:
        reader.receive_data(bytes([byte]))
        assert reader.next_line() is None
        assert reader._scanned == len(reader._buf)
    reader.receive_data(b"\r\n")
    assert reader.next_line() == b"PUSH " + b"z" * 1000


@pytest.mark.parametrize(
    ("raw", "command"),
    [
        (b"END\r\n", Command("END", "")),
        (b"END\n", Command("END", "")),
        (b'PUSH {"jid": "a b"}\r\n', Command("PUSH", '{"jid": "a b"}')),
        (b"FETCH critical default\r\n", Command("FETCH", "critical default")),
        (b"FETCH  default\r\n", Command("FETCH", " default")),
        (b"push {}\r\n", Command("push", "{}")),
        (b"INFO \r\n", Command("INFO", "")),
        (b" INFO\r\n", Command("", "INFO")),
        (b"\r\n", Command("", "")),
        (b"A\r\r\n", Command("A\r", "")),
        (b"A\rB\n", Command("A\rB", "")),
        (b"ACK \xff\xfe\r\n", Command("ACK", "\ufffd\ufffd")),
        ("PUSH ü€😀\r\n".encode(), Command("PUSH", "ü€😀")),
    ],
)
def test_command_splitting(raw: bytes, command: Command) -> None:
    assert feed([raw]) == ([command], None)


def test_next_line_returns_raw_bytes_without_terminator() -> None:
    reader = LineReader(MAX_LINE)
    reader.receive_data(b"HELLO {\"v\":2}\r\nEND\n\xff\r\n")
    assert reader.next_line() == b'HELLO {"v":2}'
    assert reader.next_line() == b"END"
    assert reader.next_line() == b"\xff"
    assert reader.next_line() is None


def test_eof_drops_a_partial_line_but_keeps_complete_ones() -> None:
    reader = LineReader(MAX_LINE)
    reader.receive_data(b"BEAT {}\r\nPUSH {")
    reader.receive_data(b"")
    assert not reader.at_eof
    assert reader.next_command() == Command("BEAT", "{}")
    assert reader.at_eof
    assert reader.next_command() is None
    assert reader.at_eof


def test_not_at_eof_before_the_peer_closes() -> None:
    reader = LineReader(MAX_LINE)
    assert not reader.at_eof
    reader.receive_data(b"partial")
    assert reader.next_line() is None
    assert not reader.at_eof


def test_data_after_eof_is_a_local_error() -> None:
    reader = LineReader(MAX_LINE)
    reader.receive_data(b"")
    reader.receive_data(b"")
    assert reader.at_eof
    with pytest.raises(RuntimeError):
        reader.receive_data(b"END\r\n")


def test_reply_constants() -> None:
    assert wire.OK == b"+OK\r\n"
    assert wire.NULL == b"$-1\r\n"


def test_simple() -> None:
    assert wire.simple("OK") == b"+OK\r\n"
    assert wire.simple('HI {"v":2}') == b'+HI {"v":2}\r\n'


def test_error() -> None:
    assert wire.error("permission denied") == b"-ERR permission denied\r\n"
    assert wire.error("Job not unique", "NOTUNIQUE") == b"-NOTUNIQUE Job not unique\r\n"
    assert wire.error("unknown command push") == b"-ERR unknown command push\r\n"


def test_error_is_always_one_line() -> None:
    assert wire.error("bad\r\nthing\nhere\r") == b"-ERR bad  thing here \r\n"
    assert wire.error("invalid ACK \ud800") == b"-ERR invalid ACK ?\r\n"


@given(st.text(), st.sampled_from(["ERR", "NOTUNIQUE"]))
def test_error_frames_any_message_as_one_line(message: str, code: str) -> None:
    reply = wire.error(message, code)
    assert reply.startswith(f"-{code} ".encode())
    assert reply.endswith(b"\r\n")
    assert b"\r" not in reply[:-2] and b"\n" not in reply[:-2]


def test_bulk() -> None:
    assert wire.bulk("{some:jobjson}") == b"$14\r\n{some:jobjson}\r\n"
    assert wire.bulk(b'{"state":"quiet"}') == b'$17\r\n{"state":"quiet"}\r\n'
    assert wire.bulk("") == b"$0\r\n\r\n"


def test_bulk_counts_utf8_bytes() -> None:
    assert wire.bulk('["é"]') == b'$6\r\n["\xc3\xa9"]\r\n'
    assert wire.bulk("😀") == b"$4\r\n\xf0\x9f\x98\x80\r\n"


@given(st.binary() | st.text())
def test_bulk_length_matches_payload(payload: bytes | str) -> None:
    reply = wire.bulk(payload)
    header, _, rest = reply.partition(b"\r\n")
    assert rest.endswith(b"\r\n")
    assert int(header[1:]) == len(rest) - 2
