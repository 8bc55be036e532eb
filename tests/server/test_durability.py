"""Crash and restart: what was acknowledged with +OK survives SIGKILL, a torn journal tail
is dropped with a warning, real corruption stops the server, SIGTERM shuts down cleanly.

Journal files are `journal.NNNNNNNN.fj` segments of frames: a 12-byte header (big-endian
payload length, CRC32 of the payload, CRC32 of those first 8 bytes), then the msgpack
payload (see store/journal.py).
The tests build and damage frames with their own code, not the server's.
"""

from __future__ import annotations

import json
import re
import signal
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from helpers.servers import ServerProcess
from helpers.polling import fetches_blocked
from faktory_py.store.api import enqueue_op
from helpers.rawclient import RawClient, ReplyError

QUEUE = "durable"
FRAME_HEAD = struct.Struct(">III")  # length, payload CRC32, CRC32 of the first 8 header bytes


def frame_head(length: int, crc: int) -> bytes:
    checked = struct.pack(">II", length, crc)
    return checked + struct.pack(">I", zlib.crc32(checked))


# --- helpers -------------------------------------------------------------------------

def connect(server: ServerProcess, **hello: Any) -> RawClient:
    c = server.client()
    assert c.handshake(**hello) == b"OK"
    return c


def make_job(jid: str, **fields: Any) -> dict[str, Any]:
    return {"jid": jid, "jobtype": "Durable", "args": [jid], "queue": QUEUE, **fields}


def in_threads(count: int, target) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]


def push_all(server: ServerProcess, jids: list[str], connections: int = 8, pipelined: bool = True,
             **fields: Any) -> list[list[str]]:
    """Push every jid (each must get +OK), spread over connections; returns each one's order.

    Pipelined pushes share journal frames; one at a time, each push gets a frame of its own.
    """
    shares = [jids[i::connections] for i in range(connections)]

    def push(i: int) -> None:
        with connect(server) as c:
            if not pipelined:
                for jid in shares[i]:
                    assert c.push(make_job(jid, **fields)) == b"OK", jid
                return
            lines = b"".join(f"PUSH {json.dumps(make_job(j, **fields))}\r\n".encode() for j in shares[i])
            c.send(lines)  # pipelined: replies come back in order
            for jid in shares[i]:
                assert c.reply() == b"OK", jid

    in_threads(connections, push)
    return shares


def fetch_jids(c: RawClient, count: int) -> list[str]:
    out = []
    for _ in range(count):
        job = c.fetch(QUEUE)
        assert job is not None
        out.append(job["jid"])
    return out


def info(server: ServerProcess) -> dict[str, Any]:
    with connect(server) as c:
        return c.info()["faktory"]


def drain(server: ServerProcess, expected: int, *, then_empty: bool = True) -> list[str]:
    """FETCH `expected` jobs, then (optionally) check one more FETCH finds nothing (~2 s)."""
    with connect(server) as c:
        c.send(b"".join(f"FETCH {QUEUE}\r\n".encode() for _ in range(expected)))
        jids = []
        for _ in range(expected):
            body = c.reply()
            assert body is not None
            jids.append(json.loads(body)["jid"])
        if then_empty:
            assert c.fetch(QUEUE) is None
        return jids


def segments(server: ServerProcess) -> list[Path]:
    return sorted(server.data_dir.glob("journal.*.fj"))


def frames(path: Path) -> list[tuple[int, int]]:
    """(offset, total length) of every frame in a journal file."""
    data = path.read_bytes()
    out, offset = [], 0
    while offset + FRAME_HEAD.size <= len(data):
        length, crc, _head_crc = FRAME_HEAD.unpack_from(data, offset)
        assert data[offset:offset + FRAME_HEAD.size] == frame_head(length, crc)
        end = offset + FRAME_HEAD.size + length
        assert end <= len(data) and zlib.crc32(data[offset + FRAME_HEAD.size:end]) == crc
        out.append((offset, end - offset))
        offset = end
    assert offset == len(data)
    return out


def restart_for_checks(server: ServerProcess) -> None:
    """Restart on the same data dir; `--fsync no` only speeds up the checks that follow."""
    server.args = ("--fsync", "no")
    server.start()


# --- SIGKILL while pushing --------------------------------------------------------------

@pytest.mark.parametrize("policy, io_processes", [("everysec", "0"), ("always", "0"), ("everysec", "2")])
def test_sigkill_loses_nothing_acknowledged(server_factory, policy: str, io_processes: str) -> None:
    """Also with connection processes (`--io-processes 2`): the state process is killed."""
    server = server_factory(args=("--fsync", policy, "--io-processes", io_processes))
    initial = [f"init-{i:06d}" for i in range(2000)]
    orders = push_all(server, initial, reserve_for=60)
    assert info(server)["queues"][QUEUE] == 2000

    # 300 fetched and ACKed, spread over 5 worker connections
    acked: list[str] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        with connect(server, wid=f"acker-{i}") as c:
            for jid in fetch_jids(c, 60):
                assert c.json_command("ACK", {"jid": jid}) == b"OK"
                with lock:
                    acked.append(jid)

    in_threads(5, work)
    assert len(acked) == 300
    # 50 more fetched and left in flight (reserve_for 60: still reserved after the restart)
    inflight_conn = connect(server, wid="crashing-worker")
    inflight = fetch_jids(inflight_conn, 50)
    f = info(server)
    assert f["sets"]["working"] == 50 and f["queues"][QUEUE] == 1650

    # a producer still pushing when the server is killed
    extra_ok: list[str] = []
    unconfirmed: list[str] = []
    started = threading.Event()

    def keep_pushing() -> None:
        with connect(server) as c:
            for i in range(1_000_000):
                jid = f"extra-{i:06d}"
                unconfirmed[:] = [jid]
                try:
                    reply = c.push(make_job(jid, reserve_for=60))
                except (ConnectionError, OSError):
                    return
                assert reply == b"OK"
                extra_ok.append(jid)
                unconfirmed.clear()
                if len(extra_ok) == 50:
                    started.set()

    pusher = threading.Thread(target=keep_pushing)
    pusher.start()
    assert started.wait(20)
    server.kill()
    pusher.join(10)
    assert not pusher.is_alive()
    inflight_conn.close()

    restart_for_checks(server)
    f = info(server)
    assert f["sets"]["working"] == 50
    queued = f["queues"][QUEUE]
    maybe = 1 if unconfirmed else 0
    assert 1650 + len(extra_ok) <= queued <= 1650 + len(extra_ok) + maybe

    drained = drain(server, queued)  # its last FETCH proves the 50 in flight are not fetchable
    assert len(set(drained)) == len(drained), "a job came back twice"
    remaining = set(initial) - set(acked) - set(inflight)
    assert set(drained) >= remaining | set(extra_ok)
    assert set(drained) <= remaining | set(extra_ok) | set(unconfirmed)
    assert not set(drained) & set(acked), "an ACKed job came back"
    assert not set(drained) & set(inflight), "a reserved job was handed out again"
    # FIFO survives the restart: each producer's jobs come out in its order
    position = {jid: i for i, jid in enumerate(drained)}
    for order in orders + [extra_ok]:
        kept = [jid for jid in order if jid in position]
        assert [position[j] for j in kept] == sorted(position[j] for j in kept)

    # the 50 in-flight jobs are the reserved ones: FAIL finds each of them
    with connect(server) as c:
        for jid in inflight:
            assert c.json_command("FAIL", {"jid": jid, "errtype": "Crash", "message": "worker died"}) == b"OK"
        for jid in acked[:5]:
            with pytest.raises(ReplyError, match="Job not found"):
                c.json_command("FAIL", {"jid": jid})
        f = c.info()["faktory"]
    assert f["sets"]["working"] == len(drained) and f["sets"]["retries"] == 50
    assert f["total_processed"] == 300 + 50 and f["total_failures"] == 50


def test_everything_survives_sigkill(server_factory) -> None:
    """Scheduled, retries, dead, paused queues and counters come back too."""
    server = server_factory()
    with connect(server) as c:
        assert c.push(make_job("sched-00001", at="2099-01-01T00:00:00Z")) == b"OK"
        assert c.push(make_job("retry-00001")) == b"OK"
        assert c.push(make_job("dead-000001", retry=-1)) == b"OK"
        for _ in range(2):
            job = c.fetch(QUEUE)
            assert c.json_command("FAIL", {"jid": job["jid"], "errtype": "E", "message": "m"}) == b"OK"
        assert c.push(make_job("paused-0001", queue="paused")) == b"OK"
        assert c.command("QUEUE PAUSE paused") == b"OK"
        assert c.push(make_job("done-000001", queue="other")) == b"OK"
        job = c.fetch("other")
        assert c.json_command("ACK", {"jid": job["jid"]}) == b"OK"
        before = c.info()["faktory"]
    server.kill()
    server.start()
    after = info(server)
    for key in ("queues", "sets", "total_processed", "total_failures", "total_enqueued", "total_queues"):
        assert after[key] == before[key], key
    assert after["sets"] == {"dead": 1, "retries": 1, "scheduled": 1, "working": 0}
    with connect(server) as c:
        start = time.monotonic()
        assert c.fetch("paused") is None  # still paused
        assert time.monotonic() - start >= 1.5
        assert c.command("QUEUE RESUME paused") == b"OK"
        assert c.fetch("paused")["jid"] == "paused-0001"
        assert c.json_command("MUTATE", {"cmd": "requeue", "target": "retries", "filter": {}}) == b"OK"
        failure = c.fetch(QUEUE)["failure"]
        assert failure["errtype"] == "E" and failure["retry_count"] == 0


# --- damaged journals ------------------------------------------------------------------

def torn_frame() -> bytes:
    import msgpack

    payload = msgpack.packb([enqueue_op(make_job("torn-000001")).encode()], use_bin_type=True)
    frame = frame_head(len(payload), zlib.crc32(payload)) + payload
    return frame[: len(frame) // 2]


@pytest.mark.parametrize("garbage", [
    pytest.param(b"\x01\x02\x03", id="partial-header"),
    pytest.param(frame_head(0x1000, 0x12345678) + b"\xab" * 40, id="length-past-eof"),
    pytest.param(torn_frame(), id="truncated-frame"),
    pytest.param(b"\x00" * 4096, id="zero-filled"),
])
def test_torn_tail_is_dropped_with_warning(server_factory, garbage: bytes) -> None:
    server = server_factory()
    jids = [f"tail-{i:06d}" for i in range(200)]
    push_all(server, jids, connections=2)
    server.kill()
    last = segments(server)[-1]
    with open(last, "ab") as f:
        f.write(garbage)

    server.start()
    log = server.log.read_text()
    assert re.search(r" W faktory_py[.\w]*: .*" + re.escape(last.name) + r".*torn", log), log
    assert info(server)["queues"][QUEUE] == 200
    # appends continue after the cut, and survive another crash
    with connect(server) as c:
        assert c.push(make_job("after-tear-1")) == b"OK"
    server.kill()
    server.start()
    assert info(server)["queues"][QUEUE] == 201
    assert sorted(drain(server, 201, then_empty=False)) == sorted(jids + ["after-tear-1"])


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_flipped_payload_byte_refuses_to_start(server_factory) -> None:
    server = server_factory()
    push_all(server, [f"flip-{i:06d}" for i in range(200)], connections=1, pipelined=False)
    server.kill()
    last = segments(server)[-1]
    offset, length = frames(last)[100]
    flip(last, offset + FRAME_HEAD.size + length // 2)
    with pytest.raises(RuntimeError, match="server exited"):
        server.start()
    assert server.proc.returncode != 0
    log = server.log.read_text()
    assert str(last) in log and f"offset {offset}" in log, log[-2000:]


def test_flipped_crc_byte_refuses_to_start(server_factory) -> None:
    server = server_factory()
    push_all(server, [f"crc-{i:06d}" for i in range(50)], connections=1, pipelined=False)
    server.kill()
    last = segments(server)[-1]
    offset, _length = frames(last)[20]
    flip(last, offset + 5)
    with pytest.raises(RuntimeError, match="server exited"):
        server.start()
    assert server.proc.returncode != 0
    assert f"offset {offset}" in server.log.read_text()


def test_flipped_length_byte_refuses_to_start(server_factory) -> None:
    server = server_factory()
    push_all(server, [f"len-{i:06d}" for i in range(200)], connections=1, pipelined=False)
    server.kill()
    last = segments(server)[-1]
    size_before = last.stat().st_size
    offset, _length = frames(last)[100]
    flip(last, offset + 1)  # the length's second byte: now far past the end of the file
    try:
        server.start()
    except RuntimeError:
        assert server.proc.returncode != 0
        assert last.stat().st_size == size_before, "replay cut the journal"
        return
    queued = info(server)["queues"].get(QUEUE, 0)
    pytest.fail(f"server started with {queued} of 200 acknowledged jobs")


# --- SIGTERM -------------------------------------------------------------------------

def test_sigterm_shuts_down_cleanly(server_factory) -> None:
    server = server_factory()
    jids = [f"term-{i:06d}" for i in range(300)]
    push_all(server, jids, connections=3)
    with connect(server, wid="term-worker") as c:
        inflight = c.fetch(QUEUE)["jid"]
    acked = []
    with connect(server) as c:
        for _ in range(10):
            jid = c.fetch(QUEUE)["jid"]
            assert c.json_command("ACK", {"jid": jid}) == b"OK"
            acked.append(jid)

    idle = connect(server)
    busy = connect(server)
    server.proc.send_signal(signal.SIGTERM)
    # keep talking on `busy`: every reply is a normal one until the server refuses or closes
    outcome = None
    deadline = time.monotonic() + 5
    while outcome is None and time.monotonic() < deadline:
        try:
            busy.send(b"INFO\r\n")
            reply = busy.reply()
            assert reply.startswith(b"{")
        except ReplyError as exc:
            assert str(exc) == "ERR shutdown in progress"
            outcome = "refused"
            assert busy.closed_by_peer(within=3)
        except (ConnectionError, OSError):
            outcome = "closed"
        time.sleep(0.01)
    assert outcome is not None
    assert server.proc.wait(15) == 0
    assert idle.closed_by_peer(within=1)
    idle.close()
    busy.close()
    log = server.log.read_text()
    assert "Traceback" not in log, log

    server.start()
    f = info(server)
    assert f["queues"][QUEUE] == 300 - 11 and f["sets"]["working"] == 1
    assert f["total_processed"] == 10
    drained = drain(server, 289)
    assert set(drained) == set(jids) - set(acked) - {inflight}


def test_sigterm_during_blocking_fetch(server_factory) -> None:
    """The FETCH blocked at SIGTERM is answered `$-1` (no job), not dropped (spec §7,
    DEVIATIONS #26); the connection is closed after the grace and the stop exits 0."""
    server = server_factory()
    c = connect(server, wid="blocked")
    c.send(f"FETCH {QUEUE}\r\n".encode())
    with connect(server) as side:
        fetches_blocked(side.info, 1)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    assert c.wait_closed() == b"$-1\r\n"
    c.close()


def test_second_server_on_same_data_dir_is_refused(server_factory) -> None:
    first = server_factory()
    second = server_factory(start=False)
    second.data_dir = first.data_dir
    with pytest.raises(RuntimeError, match="server exited"):
        second.start()
    assert second.proc.returncode != 0
    assert "in use" in second.log.read_text()
    assert info(first)["total_queues"] == 0
