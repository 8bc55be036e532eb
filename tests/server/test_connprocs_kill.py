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

from faktory_py.tools.processes import gone
from helpers.jobs import job
from helpers.polling import eventually
from helpers.rawclient import RawClient
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
