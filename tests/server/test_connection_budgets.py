"""Connection floods through the real CLI process: a descriptor limit, silent sockets, wrong passwords.

None of them may stop the server or keep identified clients out (admission.py, fdlimit.py,
server/tcp.py `Connections`).
"""

from __future__ import annotations

import json
import resource
import select
import socket

import pytest

from helpers.servers import ServerProcess
from faktory_py.tools import processes
from helpers.polling import eventually
from helpers.rawclient import RawClient, ReplyError, new_jid


class LimitedServer(ServerProcess):
    """The CLI process with soft and hard RLIMIT_NOFILE 256, like `ulimit -n 256`."""

    def command(self) -> list[str]:
        return ["prlimit", "--nofile=256:256", "--", *super().command()]


@pytest.fixture
def limited_factory(tmp_path):
    yield from processes.factory(LimitedServer, tmp_path, "limited")


def need_descriptors(count: int) -> None:
    """Raise this test process's soft limit so it can hold `count` sockets (or skip)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count:
        if hard != resource.RLIM_INFINITY and hard < count:
            pytest.skip(f"needs {count} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


def first_line(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """The server's first line, b"" if it closed the socket, or TimeoutError."""
    sock.settimeout(timeout)
    data = b""
    try:
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data


def round_trip(client: RawClient, queue: str) -> None:
    jid = new_jid()
    assert client.push({"jid": jid, "jobtype": "T", "args": [jid], "queue": queue}) == b"OK"
    job = client.fetch(queue)
    assert job is not None and job["jid"] == jid
    assert client.json_command("ACK", {"jid": jid}) == b"OK"


@pytest.mark.timeout(120)
def test_at_the_descriptor_limit_new_connections_are_refused_and_the_server_stays_up(limited_factory) -> None:
    server = limited_factory()
    assert "open-file limit: 256 (hard 256)" in server.log_text()
    need_descriptors(1024)
    accepted: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(400):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            line = first_line(sock)  # a prompt answer for every attempt, never a hang
            if line.startswith(b"+HI"):
                sock.sendall(b'HELLO {"v":2}\r\n')
                assert first_line(sock) == b"+OK\r\n"
                accepted.append(sock)
            else:
                assert line in (b"-ERR too many connections\r\n", b""), line
                refused += 1
                sock.close()
        assert 100 < len(accepted) < 256 and refused == 400 - len(accepted)
        # Every accepted connection is served, and their pushes make the journal fsync.
        for i, sock in enumerate(accepted):
            sock.sendall(b'PUSH {"jid":"fd-%06d","jobtype":"T","args":[],"queue":"fd"}\r\n' % i)
        for sock in accepted:
            assert first_line(sock) == b"+OK\r\n"
        for sock in accepted[:20]:
            sock.close()

        def fresh_client_works() -> bool:
            try:
                with RawClient(server.port) as fresh:
                    assert fresh.handshake() == b"OK"
                    assert fresh.info()["faktory"]["queues"]["fd"] == len(accepted)
                    round_trip(fresh, "fresh")
                    return True
            except (ConnectionError, ReplyError, AssertionError):
                return False

        eventually(fresh_client_works, 30, "a fresh client served once others closed")
        assert server.proc is not None and server.proc.poll() is None
    finally:
        for sock in accepted:
            sock.close()
    assert server.stop() == 0


@pytest.mark.timeout(180)
def test_silent_sockets_do_not_keep_real_clients_out(server_factory) -> None:
    need_descriptors(4000)
    server = server_factory()
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2500)]
    try:
        for i in range(50):
            with RawClient(server.port) as real:
                assert real.handshake(wid=f"real-{i}", hostname="h", pid=i, labels=[]) == b"OK"
                round_trip(real, f"real-{i}")
        log = server.log_text()
        assert "too many connections" not in log and "Traceback" not in log
    finally:
        for sock in silent:
            sock.close()
    assert server.stop() == 0


@pytest.mark.timeout(120)
def test_wrong_password_flood_does_not_stall_an_identified_client(server_factory) -> None:
    server = server_factory(password="s3cret")
    canary = server.client()
    assert canary.handshake(password="s3cret") == b"OK"
    attackers = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(60)]
    try:
        for sock in attackers:
            assert first_line(sock).startswith(b"+HI ")
        wrong = b'HELLO {"v":2,"pwdhash":"%s"}\r\n' % (b"0" * 64)
        for sock in attackers:  # every one of them costs the server a full password check
            sock.sendall(wrong)
        for _ in range(10):
            round_trip(canary, "canary")
        # Progress, not speed: the canary got its ten round trips while most of the checks
        # it queued behind were still running (one check at a time would have run them all).
        readable, _, _ = select.select(attackers, [], [], 0)
        assert len(readable) < len(attackers) // 2, f"{len(readable)} of {len(attackers)} checks ran first"
        for sock in attackers:
            assert first_line(sock, timeout=30) in (b"-ERR Invalid password\r\n", b"")
        with RawClient(server.port) as late:  # the right password still gets in
            assert late.handshake(password="s3cret") == b"OK"
        round_trip(canary, "canary")
        assert json.loads(canary.command("INFO"))["server"]["connections"] >= 1
    finally:
        for sock in attackers:
            sock.close()
        canary.close()
