"""kill -9 with connection processes (`--io-processes 2`): of a connection process while clients
push (its clients reconnect; a new process serves; nothing acknowledged is lost), and of the
state process (its connection processes exit, releasing the port; a restart has every
acknowledged job). test_durability.py's SIGKILL test also runs in this mode.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from faktory_py.tools.processes import gone
from helpers.jobs import job
from helpers.polling import eventually
from helpers.rawclient import RawClient, ReplyError
from helpers.servers import ServerProcess
from helpers.serving import assert_serving

QUEUE = "killed"
PUSHERS = 6


def connection_processes(server: ServerProcess) -> list[int]:
    return server.pids()[1:]


def push_until_stopped(server: ServerProcess, index: int, acked: list[str], stop: threading.Event) -> None:
    """Push jobs one by one, recording each +OK; a broken connection (its process killed) is
    replaced by a new one. A PUSH whose reply never came is not recorded."""
    count = 0
    while not stop.is_set():
        client = RawClient(server.port)
        try:
            assert client.handshake() == b"OK"
            while not stop.is_set():
                jid = f"pusher{index}-{count:06d}"
                count += 1
                assert client.push(job(jid, queue=QUEUE)) == b"OK"
                acked.append(jid)
        except (ConnectionError, OSError):
            continue  # its connection process was killed: reconnect
        finally:
            client.close()


def queued_jids(server: ServerProcess) -> set[str]:
    with RawClient(server.port) as client:
        assert client.handshake() == b"OK"
        size = client.info()["faktory"]["queues"].get(QUEUE, 0)
        client.send(f"FETCH {QUEUE}\r\n".encode() * size)
        return {json.loads(body)["jid"] for body in client.replies(size)}


def test_kill_9_of_a_connection_process_then_of_the_state_process_loses_no_acknowledged_job(
        server_factory) -> None:
    server = server_factory(args=("--io-processes", "2", "--fsync", "always"))
    children = eventually(lambda: len(connection_processes(server)) == 2 and connection_processes(server),
                          10, "two connection processes")
    acked: list[list[str]] = [[] for _ in range(PUSHERS)]
    stop = threading.Event()
    threads = [threading.Thread(target=push_until_stopped, args=(server, i, acked[i], stop)) for i in range(PUSHERS)]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: all(len(a) >= 50 for a in acked), 30, "every pusher's first 50 jobs")
        os.kill(children[0], signal.SIGKILL)
        replaced = eventually(lambda: len(now := connection_processes(server)) == 2 and children[0] not in now
                              and now, 15, "a new connection process")
        counts = [len(a) for a in acked]
        eventually(lambda: all(len(a) >= c + 50 for a, c in zip(acked, counts)), 30,
                   "every pusher's next 50 jobs, after reconnecting")
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
    assert not any(thread.is_alive() for thread in threads)
    everything = {jid for pushed in acked for jid in pushed}
    assert_serving(server)

    server.kill()  # the state process
    eventually(lambda: all(gone(pid) for pid in replaced), 10, "its connection processes to exit")
    server.start()  # the port is free again: they released it
    assert queued_jids(server) >= everything
    assert "Traceback" not in server.log_text()


def test_sigterm_to_the_whole_process_group_is_a_graceful_stop(server_factory) -> None:
    """A service manager stops a service by signalling every process of it (systemd's default
    KillMode): the connection processes leave the stop to the state process, so a client still
    gets its answer, and everything exits 0."""
    server = server_factory(args=("--io-processes", "2"))
    children = eventually(lambda: len(connection_processes(server)) == 2 and connection_processes(server),
                          10, "two connection processes")
    eventually(lambda: all(ignores(pid, signal.SIGTERM) for pid in children), 10,
               "the connection processes to be past their start-up")
    with RawClient(server.port) as client:
        assert client.handshake() == b"OK"
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        assert client.push(job(queue=QUEUE)) == b"OK"  # still served
        server.proc.send_signal(signal.SIGTERM)
        eventually(lambda: "shutting down" in server.log_text(), 10, "the state process to begin its stop")
        with pytest.raises(ReplyError, match="shutdown in progress"):
            client.push(job(queue=QUEUE))
    assert server.stop() == 0
    assert all(gone(pid) for pid in children)
    assert "ended (status" not in server.log_text()  # no connection process ended before the stop


def ignores(pid: int, signum: int) -> bool:
    """Whether process `pid` ignores `signum` (its SigIgn mask in /proc)."""
    with open(f"/proc/{pid}/status") as status:
        mask = next(line for line in status if line.startswith("SigIgn:")).split()[1]
    return bool(int(mask, 16) >> (signum - 1) & 1)
