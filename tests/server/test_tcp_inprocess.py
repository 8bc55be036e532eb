"""server/tcp.py's timing rules at their exact deadlines: in-process, over in-memory streams,
on trio's MockClock (tests/helpers/inprocess.py).

Each test takes pytest-trio's `autojump_clock`: when every task waits, mock time jumps to the
next deadline, so "closed at 2 s" is asserted at 2 s, not within a margin of wall-clock time.
Over real TCP, test_bad_input.py checks that silent and stalled peers are closed while a
bystander is served, and test_timers.py the timers' deadlines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing

from faktory_py.tools.client import ReplyError
from faktory_py.util.timefmt import parse_time
from helpers.async_client import AsyncClient, PeerClosed
from helpers.inprocess import inprocess_config, inprocess_server
from helpers.jobs import job, push_command

#: MockClock jumps land on the deadline itself; this only absorbs float rounding.
TICK = 1e-6
#: DueTimer runs an entry 1 ms after it is due (server/timers.py).
DUE_LATE = 0.001


def hello_line() -> bytes:
    return b'HELLO {"v":2}\r\n'


async def closed_at(stream: trio.abc.Stream) -> float:
    """Read until the server closes the stream; the trio time it did."""
    while True:
        try:
            if not await stream.receive_some(65536):
                break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            break
    return trio.current_time()


async def test_hello_deadline_closes_at_exactly_handshake_timeout(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with inprocess_server(inprocess_config(tmp_path)) as s:
        start = trio.current_time()
        stream = s.open_stream()
        assert await closed_at(stream) - start == pytest.approx(2.0, abs=TICK)
        # just inside the deadline the same handshake succeeds
        start = trio.current_time()
        stream = s.open_stream()
        await trio.sleep_until(start + 2.0 - 0.001)
        client = AsyncClient(stream)
        assert (await client.reply()).startswith(b"HI ")
        await stream.send_all(hello_line())
        assert await client.reply() == b"OK"
        assert await client.command("FLUSH") == b"OK"


async def test_hello_deadline_covers_the_whole_handshake_not_each_read(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A HELLO trickling in a byte every 0.25 s is closed at 2 s, while it trickles."""
    async with inprocess_server(inprocess_config(tmp_path)) as s:
        start = trio.current_time()
        stream = s.open_stream()

        async def trickle() -> None:
            for byte in hello_line():
                await trio.sleep(0.25)
                try:
                    await stream.send_all(bytes([byte]))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            assert await closed_at(stream) - start == pytest.approx(2.0, abs=TICK)


async def test_fetch_on_empty_queues_answers_nil_exactly_at_fetch_timeout(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with inprocess_server(inprocess_config(tmp_path)) as s:
        client = await s.connect()
        start = trio.current_time()
        await client.send("FETCH default other")
        with trio.move_on_at(start + 2.0 - TICK):
            await client.stream.receive_some()
            raise AssertionError("FETCH answered before its 2 s were up")
        assert await client.stream.receive_some() == b"$-1\r\n"
        assert trio.current_time() - start == pytest.approx(2.0, abs=TICK)
        assert (await client.info())["server"]["fetches_waiting"] == 0


async def test_blocked_fetch_is_woken_at_once_by_a_push_on_another_connection(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with inprocess_server(inprocess_config(tmp_path)) as s:
        worker, producer = await s.connect(wid="w-wake"), await s.connect()
        await worker.send("FETCH critical default")
        await producer.wait_fetches_waiting(1)
        await trio.sleep(0.5)  # mock time: the FETCH must not end or be answered meanwhile
        assert (await producer.info())["server"]["fetches_waiting"] == 1
        pushed_at = trio.current_time()
        assert await producer.push({"jid": "wake-000001", "jobtype": "T", "args": [], "queue": "default"}) == b"OK"
        assert json.loads(await worker.reply())["jid"] == "wake-000001"
        assert trio.current_time() == pushed_at  # no time passed: woken, not polled
        assert (await producer.info())["server"]["fetches_waiting"] == 0


async def test_a_waiting_fetch_whose_job_a_later_fetch_took_keeps_its_place(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Waiting in their tasks: a PUSH and a FETCH pipelined in one write, the FETCH takes the
    job the PUSH woke the oldest waiting FETCH for; that one still gets the next job, before
    a FETCH that began to wait after it (as after Faktory's BRPOP)."""
    async with inprocess_server(inprocess_config(tmp_path)) as s:
        oldest, newer, busy = [await s.connect(wid=f"w-place-{n}") for n in range(3)]
        await oldest.send("FETCH q")
        await busy.wait_fetches_waiting(1)
        await newer.send("FETCH q")
        await busy.wait_fetches_waiting(2)
        first, second = job(queue="q"), job(queue="q")
        await busy.stream.send_all(push_command(first) + b"\r\nFETCH q\r\n")
        assert await busy.reply() == b"OK"
        assert json.loads(await busy.reply())["jid"] == first["jid"]
        assert (await busy.info())["server"]["fetches_waiting"] == 2
        assert await busy.push(second) == b"OK"
        assert json.loads(await oldest.reply())["jid"] == second["jid"]
        assert (await busy.info())["server"]["fetches_waiting"] == 1


async def test_a_peer_pipelining_behind_a_waiting_fetch_is_not_read_past_a_line(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A lockstep stream's send waits until the server reads: behind a FETCH waiting in its
    task the server reads until more than a line's worth (`max_line`) is buffered, then
    stops; once the FETCH is answered it reads on, and every command runs, in order."""
    line = b"NOOP " + b"x" * 200 + b"\r\n"
    async with inprocess_server(inprocess_config(tmp_path, max_line=1024)) as s:
        worker, producer = await s.connect(wid="w-held", lockstep=True), await s.connect()
        sent = 0

        async def pipeline() -> None:
            nonlocal sent
            await worker.send("FETCH q")
            for _ in range(100):
                await worker.stream.send_all(line)
                sent += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipeline)
            await producer.wait_fetches_waiting(1)
            await trio.sleep(1.0)  # mock time: jumps once every task waits (the FETCH has 2 s)
            assert 1024 < sent * len(line) <= 1024 + len(line)
            assert await producer.push({"jid": "held-000001", "jobtype": "T", "args": [], "queue": "q"}) == b"OK"
            assert json.loads(await worker.reply())["jid"] == "held-000001"
            for _ in range(100):
                with pytest.raises(ReplyError, match="unknown command NOOP"):
                    await worker.reply()
        assert sent == 100


async def test_send_watchdog_closes_a_peer_that_stops_reading(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A lockstep stream's send waits until the peer reads: a client that sends INFO and never
    reads its reply stalls that send, and the watchdog (checking every 1 s) closes the
    connection once the send is more than 10 s old, while another client is served."""
    async with inprocess_server(inprocess_config(tmp_path)) as s:
        bystander = await s.connect()
        stalled = await s.connect(lockstep=True)
        assert (await bystander.info())["server"]["connections"] == 2
        await stalled.send("INFO")
        sent_at = trio.current_time()
        await trio.sleep_until(sent_at + 10.0 - 0.01)
        assert (await bystander.info())["server"]["connections"] == 2
        await trio.sleep_until(sent_at + 11.0 + 0.01)
        assert (await bystander.info())["server"]["connections"] == 1
        with pytest.raises(PeerClosed):
            while True:  # what the server had sent, then the close
                await stalled.reply()


async def test_expired_reservation_goes_to_retries_and_back_to_its_queue_on_time(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with inprocess_server(inprocess_config(tmp_path)) as s:
        client = await s.connect()
        assert await client.push({"jid": "reserve-001", "jobtype": "T", "args": [], "reserve_for": 60}) == b"OK"
        assert (await client.fetch("default"))["jid"] == "reserve-001"
        expires = s.unix_to_trio(s.server.dispatcher.clock.now() + 60) + DUE_LATE

        await trio.sleep_until(expires - 0.001)
        assert (await client.info())["faktory"]["sets"] == {"scheduled": 0, "retries": 0, "dead": 0, "working": 1}
        await trio.sleep_until(expires + 0.001)
        assert (await client.info())["faktory"]["sets"] == {"scheduled": 0, "retries": 1, "dead": 0, "working": 0}

        # the retry comes back when its failure's next_at says: a blocked FETCH gets it then
        while (got := await client.fetch("default")) is None:
            pass
        failure = got["failure"]
        assert failure["errtype"] == "ReservationExpired"
        due = s.unix_to_trio(parse_time(failure["next_at"])) + DUE_LATE
        assert trio.current_time() == pytest.approx(due, abs=1e-5)  # next_at is in microseconds
