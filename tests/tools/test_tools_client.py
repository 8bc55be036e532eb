"""The one client's parts that need no server: the reply reader (sans-io) and the URL parser."""

from __future__ import annotations

import pytest

from faktory_py.tools.client import Address, ProtocolError, ReplyError, ReplyReader, parse_url


def replies(reader: ReplyReader, *chunks: bytes) -> list:
    """Everything `reader` gives for `chunks` fed one by one."""
    out = []
    for chunk in chunks:
        reader.feed(chunk)
        while (item := reader.gets()) is not False:
            out.append(item)
    return out


def test_parsed_replies_byte_by_byte() -> None:
    stream = b'+OK\r\n$-1\r\n$2\r\n{}\r\n-ERR Unknown command\r\n$5\r\na\r\nbc\r\n'
    got = replies(ReplyReader(), *(stream[i:i + 1] for i in range(len(stream))))
    assert got[:3] == [b"OK", None, b"{}"] and got[4] == b"a\r\nbc"
    assert isinstance(got[3], ReplyError) and str(got[3]) == "ERR Unknown command"


def test_raw_replies_keep_their_bytes() -> None:
    reader = ReplyReader(raw=True)
    assert replies(reader, b'+HI {"v":2}\r\n$3\r\nabc', b'\r\n+bare\n$-1\r\n') == [
        b'+HI {"v":2}\r\n', b"$3\r\nabc\r\n", b"+bare\n", b"$-1\r\n"]
    reader.feed(b"$4\r\nab")
    assert reader.gets() is False and reader.unread() == b"$4\r\nab"


@pytest.mark.parametrize("stream", [b"$3\r\nabcXY", b"$x\r\n", b"$3\n", b"$-2\r\n", b"$03\r\nabc\r\n"])
@pytest.mark.parametrize("raw", [False, True])
def test_bulk_framing_is_checked(stream: bytes, raw: bool) -> None:
    with pytest.raises(ProtocolError):
        replies(ReplyReader(raw), stream)


@pytest.mark.parametrize("stream", [b"+OK\n", b":1\r\n", b"*0\r\n"])
def test_parsed_mode_wants_crlf_lines_of_known_types(stream: bytes) -> None:
    with pytest.raises(ProtocolError):
        replies(ReplyReader(), stream)


def test_parse_url_edges() -> None:
    """(The common forms are pinned by tests/tools/test_conformance_cli.py::test_parse_url.)"""
    assert parse_url("tcp+tls://h:1") == Address("h", 1, tls=True)
    assert parse_url("tcp://:@h") == Address("h")  # an empty password is none
    assert parse_url("tcp://") == Address("127.0.0.1")
    for bad in ("http://h", "tcp://h:99999", "tcp://h:x"):
        with pytest.raises(ValueError):
            parse_url(bad)
