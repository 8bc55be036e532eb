"""Hostile or broken peers: each must get an answer or a clean close, never a hang, and
another client must keep being served meanwhile."""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from helpers.servers import ServerProcess
from helpers.servers import module_server as server  # noqa: F401  (fixture: one server for the module)
from helpers.polling import eventually
from helpers.rawclient import RawClient, new_jid

MiB = 1024 * 1024


@pytest.fixture
def bystander(server: ServerProcess) -> Iterator[RawClient]:
    """A well-behaved producer/consumer that must keep working whatever the others do."""
    with server.client() as c:
        assert c.handshake(wid=f"bystander-{new_jid()}") == b"OK"
        yield c


def round_trip(c: RawClient, queue: str = "bystander") -> None:
    """PUSH, FETCH and ACK one job (the queue is private to the bystander)."""
    jid = new_jid()
    assert c.push({"jid": jid, "jobtype": "Ok", "args": [], "queue": queue}) == b"OK"
    fetched = c.fetch(queue)
    assert fetched is not None and fetched["jid"] == jid
    assert c.json_command("ACK", {"jid": jid}) == b"OK"


def read_lines(c: RawClient, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\r\n") < count:
        chunk = c.recv_raw()
        assert chunk, f"closed after {data!r}"
        data += chunk
    lines = data.split(b"\r\n")
    assert lines[-1] == b""
    return lines[:-1]


def run_in_thread(target) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def wrapper() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    thread = threading.Thread(target=wrapper, daemon=True)
    thread.start()
    return thread, errors


def test_garbage_lines_each_get_an_error(server: ServerProcess, bystander: RawClient) -> None:
    rng = random.Random(1234)
    lines = []
    for _ in range(200):
        line = bytes(rng.choice([b for b in range(256) if b not in (10, 13, 32)]) for _ in range(rng.randint(1, 60)))
        lines.append(line)
    with server.client() as c:
        assert c.handshake() == b"OK"
        c.send(b"".join(line + b"\r\n" for line in lines))
        replies = read_lines(c, len(lines))
        assert len(replies) == len(lines)
        assert all(r.startswith(b"-ERR unknown command ") for r in replies), replies[:5]
        assert c.command("INFO").startswith(b"{")
        round_trip(bystander)


def test_garbage_json_arguments(server: ServerProcess, bystander: RawClient) -> None:
    rng = random.Random(99)
    lines = []
    for verb in (b"PUSH", b"PUSHB", b"ACK", b"FAIL", b"BEAT", b"MUTATE", b"QUEUE"):
        for _ in range(20):
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))).replace(b"\n", b"")
            lines.append(verb + b" " + junk)
    with server.client() as c:
        assert c.handshake() == b"OK"
        c.send(b"".join(line + b"\r\n" for line in lines))
        replies = read_lines(c, len(lines))
        assert len(replies) == len(lines)
        for line, reply in zip(lines, replies):
            assert reply.startswith(b"-ERR "), (line, reply)
        assert c.command("INFO").startswith(b"{")
    round_trip(bystander)


def test_deeply_nested_json_is_rejected_not_fatal(server: ServerProcess, bystander: RawClient) -> None:
    with server.client() as c:
        assert c.handshake() == b"OK"
        deep = "[" * 100_000 + "]" * 100_000
        c.send(f'PUSH {{"jid":"deep-json-1","jobtype":"x","args":{deep}}}\r\n'.encode())
        reply = read_lines(c, 1)[0]
        assert reply.startswith(b"-ERR ")
        c.send(f"ACK {deep}\r\n".encode())
        assert read_lines(c, 1)[0].startswith(b"-ERR ")
        assert c.command("INFO").startswith(b"{")
    round_trip(bystander)


def test_line_over_16_mib_gets_error_then_close(server: ServerProcess, bystander: RawClient) -> None:
    with server.client() as c:
        assert c.handshake() == b"OK"
        c.sock.settimeout(20)

        def send() -> None:
            chunk = b"x" * MiB
            try:
                c.send(b"PUSH ")
                for _ in range(17):
                    c.send(chunk)
            except OSError:
                pass  # the server may close while we are still sending

        thread, errors = run_in_thread(send)
        # the bystander is served while the big line streams in
        round_trip(bystander)
        data = c.wait_closed()
        thread.join(20)
        assert not errors
        assert data.startswith(b"-ERR "), data[:200]
        assert data.endswith(b"\r\n") and data.count(b"\r\n") == 1, data[:200]
        assert b"too long" in data
    round_trip(bystander)
    assert bystander.command("INFO").startswith(b"{")


def test_long_line_before_hello_closes(server: ServerProcess, bystander: RawClient) -> None:
    with server.client() as c:
        c.sock.settimeout(20)

        def send() -> None:
            try:
                for _ in range(17):
                    c.send(b"y" * MiB)
            except OSError:
                pass

        thread, _ = run_in_thread(send)
        data = c.wait_closed()
        thread.join(20)
        assert data.startswith(b"+HI ") and data.count(b"\r\n") == 1, data[:200]  # then a silent close
    round_trip(bystander)


def test_line_of_exactly_the_limit_is_not_too_long(server: ServerProcess) -> None:
    """A 1 MiB JSON argument is an ordinary (large) command."""
    with server.client() as c:
        assert c.handshake() == b"OK"
        jid = new_jid()
        big = "z" * MiB
        assert c.push({"jid": jid, "jobtype": "Big", "args": [big], "queue": "big"}) == b"OK"
        fetched = c.fetch("big")
        assert fetched["args"] == [big]
        assert c.json_command("ACK", {"jid": jid}) == b"OK"


def test_invalid_utf8(server: ServerProcess, bystander: RawClient) -> None:
    with server.client() as c:
        assert c.handshake() == b"OK"
        c.send(b"\xff\xfeVERB\r\n")
        assert read_lines(c, 1)[0].startswith(b"-ERR unknown command ")
        jid = new_jid()
        c.send(b'PUSH {"jid":"' + jid.encode() + b'","jobtype":"T","args":["a\xffb\xc3"],"queue":"utf"}\r\n')
        reply = read_lines(c, 1)[0]
        assert reply == b"+OK" or reply.startswith(b"-ERR "), reply
        if reply == b"+OK":
            fetched = c.fetch("utf")  # the client checks the bulk length against the bytes
            assert fetched["jid"] == jid
            assert fetched["args"] == ["a\ufffdb\ufffd"]
            assert c.json_command("ACK", {"jid": jid}) == b"OK"
        # a lone surrogate escape is valid JSON but cannot be encoded as UTF-8 (Go makes it U+FFFD)
        jid2 = new_jid()
        c.send(b'PUSH {"jid":"' + jid2.encode() + b'","jobtype":"T","args":["x\\ud800y"],"queue":"utf"}\r\n')
        assert read_lines(c, 1)[0] == b"+OK"
        fetched = c.fetch("utf")
        assert fetched["jid"] == jid2 and fetched["args"] in (["x\ufffdy"], ["x?y"])
        assert c.json_command("ACK", {"jid": jid2}) == b"OK"
        assert c.command("INFO").startswith(b"{")
    round_trip(bystander)


def test_multibyte_bulk_length_counts_bytes(server: ServerProcess) -> None:
    with server.client() as c:
        assert c.handshake() == b"OK"
        jid = new_jid()
        assert c.push({"jid": jid, "jobtype": "Ünïcødé", "args": ["日本語", "🎉"], "queue": "mb"}) == b"OK"
        c.send(b"FETCH mb\r\n")
        header = b""
        while not header.endswith(b"\r\n"):
            header += c.recv_raw(1)
        length = int(header[1:-2])
        body = c.recv_raw(length + 2)
        assert body.endswith(b"\r\n") and len(body) == length + 2
        fetched = json.loads(body[:-2])
        assert fetched["jobtype"] == "Ünïcødé" and fetched["args"] == ["日本語", "🎉"]


def test_half_closed_socket_still_gets_its_reply(server: ServerProcess, bystander: RawClient) -> None:
    jid = new_jid()
    with server.client() as c:
        assert c.handshake() == b"OK"
        c.send(b'PUSH {"jid":"' + jid.encode() + b'","jobtype":"T","args":[],"queue":"half"}\r\nINFO\r\n')
        c.sock.shutdown(socket.SHUT_WR)
        assert c.reply() == b"OK"
        assert c.reply().startswith(b"{")
        assert c.closed_by_peer(within=3)
    fetched = bystander.fetch("half")
    assert fetched is not None and fetched["jid"] == jid
    assert bystander.json_command("ACK", {"jid": jid}) == b"OK"


def test_half_closed_during_blocking_fetch(server: ServerProcess, bystander: RawClient) -> None:
    with server.client() as c:
        assert c.handshake() == b"OK"
        c.send(b"FETCH never-filled\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        round_trip(bystander)
        data = b""
        while chunk := c.recv_raw():
            data += chunk
        assert data in (b"$-1\r\n", b"")


def test_half_closed_with_partial_line(server: ServerProcess, bystander: RawClient) -> None:
    with server.client() as c:
        assert c.handshake() == b"OK"
        c.send(b"INF")
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_by_peer(within=3)
    round_trip(bystander)


def test_half_closed_before_hello(server: ServerProcess, bystander: RawClient) -> None:
    with server.client() as c:
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_by_peer(within=3)
    round_trip(bystander)


def test_abrupt_reset_mid_command(server: ServerProcess, bystander: RawClient) -> None:
    for _ in range(5):
        c = server.client()
        assert c.handshake(wid=f"reset-{new_jid()}") == b"OK"
        c.send(b'PUSH {"jid":"')
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()  # RST
    round_trip(bystander)


def test_clients_that_never_say_hello(server: ServerProcess, bystander: RawClient) -> None:
    silent = [server.client() for _ in range(20)]
    try:
        start = time.monotonic()
        round_trip(bystander)  # served while 20 handshakes hang
        for c in silent:
            assert c.closed_by_peer(within=max(0.5, 4 - (time.monotonic() - start)))
        assert time.monotonic() - start < 4.5
        round_trip(bystander)
    finally:
        for c in silent:
            c.close()


def test_many_connections_opened_and_dropped(server: ServerProcess, bystander: RawClient) -> None:
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.close()
    round_trip(bystander)
    eventually(lambda: bystander.info()["server"]["connections"] <= 5, 3, "the dropped connections to be closed",
               interval=0.05)


def test_client_that_stops_reading_is_dropped(server: ServerProcess, bystander: RawClient) -> None:
    """A peer that sends commands but never reads the replies must not stall or kill the server."""
    c = server.client()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert c.handshake() == b"OK"
    names = " ".join(f"queue{i:07d}" for i in range(100_000))
    line = f"QUEUE LATENCY {names}\r\n".encode()
    c.sock.settimeout(30)

    def flood() -> None:
        try:
            for _ in range(30):
                c.send(line)
        except OSError:
            pass

    thread, _ = run_in_thread(flood)
    try:
        start = time.monotonic()
        while time.monotonic() - start < 12.5:
            round_trip(bystander)
            time.sleep(0.25)
        assert server.proc.poll() is None, "server died"
        # by now the server gave up on the stalled peer (10 s send timeout): draining
        # what it managed to send ends in EOF or a reset
        c.sock.settimeout(5)
        closed = False
        try:
            while c.sock.recv(MiB):
                pass
            closed = True
        except ConnectionResetError:
            closed = True
        assert closed
    finally:
        c.close()
        thread.join(5)
    round_trip(bystander)


def test_binary_noise_as_first_bytes(server: ServerProcess, bystander: RawClient) -> None:
    for seed in range(10):
        with server.client() as c:
            c.send(os.urandom(200) + b"\n" + os.urandom(100))
            assert c.closed_by_peer(within=3)
    round_trip(bystander)
