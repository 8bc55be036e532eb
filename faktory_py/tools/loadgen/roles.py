"""What one load-generator thread does with its connection(s) in a workload.

A role is `role(conns, quota, params, ctx) -> dict`. Finite roles do `quota` jobs and return;
background roles (quota None) run until `ctx.stop` is set. Commands are pipelined where the
protocol allows: a batch of `depth` commands goes out in one write and the replies are read
back together, and a batch's ACKs travel in the same write as the next batch's FETCHes.
Job lines are built by string formatting, not json.dumps, and jids are read out of FETCH
replies without decoding the whole job: the generator must cost far less per job than the
server it measures.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from .conn import Conn, ReplyError

# The job Faktory's own load test pushes: jobtype SomeJob, args [1, "string", 3].
_PUSH = 'PUSH {"jid":"%s%010d","jobtype":"SomeJob","args":[1,"string",3],"queue":"%s"}\r\n'
_JOB = '{"jid":"%s%010d","jobtype":"SomeJob","args":[1,"string",3],"queue":"%s"}'
_STAMPED = 'PUSH {"jid":"%s%010d","jobtype":"SomeJob","args":["%d"],"queue":"%s"}\r\n'
_FAIL = b'","errtype":"BenchError","message":"deliberate bench failure","backtrace":[]}\r\n'
_OK = b"OK"


class Ctx:
    """A thread's link to its process: progress counter slot, stop flag."""

    def __init__(self, counters: Any, slot: int, stop: threading.Event) -> None:
        self._counters = counters
        self._slot = slot
        self.stop = stop

    def add(self, n: int) -> None:
        self._counters[self._slot] += n  # this slot is written by this thread only


def jid_prefix() -> str:
    """14 random hex digits; with a 10-digit counter, jids are 24 characters like real ones."""
    return secrets.token_hex(7)


def _jid(job: bytes) -> bytes:
    start = job.find(b'"jid":"')
    if start >= 0:
        end = job.find(b'"', start + 7)
        if end > 0:
            return job[start + 7 : end]
    return json.loads(job)["jid"].encode()


def push(conns: list[Conn], quota: int, p: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """PUSH `quota` jobs, `depth` per write, each to a random one of `queues`."""
    conn, depth, queues = conns[0], p["depth"], p["queues"]
    prefix, choice = jid_prefix(), random.choice
    sent = errors = 0
    while sent < quota and not ctx.stop.is_set():
        n = min(depth, quota - sent)
        conn.send("".join([_PUSH % (prefix, sent + i, choice(queues)) for i in range(n)]).encode())
        errors += sum(1 for r in conn.replies(n) if r != _OK)
        sent += n
        ctx.add(n)
    return {"jobs": sent, "errors": errors}


def pushb(conns: list[Conn], quota: int, p: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """PUSHB `quota` jobs in calls of `batch` jobs, keeping `window` calls in flight."""
    conn, batch, window, queue = conns[0], p["batch"], p.get("window", 2), p["queue"]
    prefix = jid_prefix()
    built = answered = errors = 0
    in_flight: list[int] = []

    def send_one() -> None:
        nonlocal built
        n = min(batch, quota - built)
        body = ",".join([_JOB % (prefix, built + i, queue) for i in range(n)])
        conn.send(f"PUSHB [{body}]\r\n".encode())
        in_flight.append(n)
        built += n

    while built < quota and len(in_flight) < window:
        send_one()
    while in_flight:
        reply = conn.item()
        n = in_flight.pop(0)
        if reply != b"{}":
            errors += n if isinstance(reply, ReplyError) else len(json.loads(reply))
        answered += n
        ctx.add(n)
        if built < quota and not ctx.stop.is_set():
            send_one()
    return {"jobs": answered, "errors": errors}


def fetch_ack(conns: list[Conn], quota: int, p: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Fetch `quota` jobs from `queues` (`depth` FETCHes per write) and ACK them, FAILing
    a `fail` fraction; a FETCH that times out (null) is re-issued."""
    conn, depth, fail = conns[0], p["depth"], p.get("fail", 0.0)
    queues = list(p["queues"])
    random.shuffle(queues)  # like Faktory's load test: each worker its own queue order
    fetch = ("FETCH " + " ".join(queues) + "\r\n").encode()
    rand = random.random
    done = nulls = errors = failed = 0
    acks: list[bytes] = []
    while done < quota and not ctx.stop.is_set():
        n = min(depth, quota - done)
        conn.send(b"".join(acks) + fetch * n)
        replies = conn.replies(len(acks) + n)
        errors += sum(1 for r in replies[: len(acks)] if r != _OK)
        acks = []
        for job in replies[len(replies) - n :]:
            if job is None:
                nulls += 1
            elif isinstance(job, ReplyError):
                errors += 1
            elif fail and rand() < fail:
                acks.append(b'FAIL {"jid":"' + _jid(job) + _FAIL)
                failed += 1
            else:
                acks.append(b'ACK {"jid":"' + _jid(job) + b'"}\r\n')
        got = len(acks)
        done += got
        ctx.add(got)
    if acks:
        conn.send(b"".join(acks))
        errors += sum(1 for r in conn.replies(len(acks)) if r != _OK)
    return {"jobs": done, "nulls": nulls, "errors": errors, "failed": failed}


def latency_push(conns: list[Conn], quota: int, p: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """PUSH `quota` jobs at `rate` per second (one at a time), each stamped with its send time."""
    conn, rate, queue = conns[0], p["rate"], p["queue"]
    prefix = jid_prefix()
    if ctx.stop.wait(p.get("delay", 0.0)):  # give the fetchers time to block in FETCH
        return {"jobs": 0, "errors": 0}
    start = time.monotonic()
    sent = errors = 0
    while sent < quota:
        wait = start + sent / rate - time.monotonic()
        if wait > 0 and ctx.stop.wait(wait):
            break
        conn.send((_STAMPED % (prefix, sent, time.monotonic_ns(), queue)).encode())
        if conn.item() != _OK:
            errors += 1
        sent += 1
        ctx.add(1)
    return {"jobs": sent, "errors": errors, "seconds": time.monotonic() - start}


def latency_fetch(conns: list[Conn], quota: None, p: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Wait in FETCH until stopped; for every job, how long since its PUSH was sent (ms)."""
    conn = conns[0]
    fetch = f"FETCH {p['queue']}\r\n".encode()
    samples: list[float] = []
    ack = b""
    errors = 0
    try:
        while not ctx.stop.is_set():
            conn.send(ack + fetch)
            if ack and conn.item() != _OK:
                errors += 1
            job = conn.item()
            now = time.monotonic_ns()
            ack = b""
            if isinstance(job, bytes):
                sent_at = int(json.loads(job)["args"][0])
                samples.append((now - sent_at) / 1e6)
                ack = b'ACK {"jid":"' + _jid(job) + b'"}\r\n'
                ctx.add(1)
            elif job is not None:
                errors += 1
    except (ConnectionError, OSError):
        if not ctx.stop.is_set():
            raise
    return {"jobs": len(samples), "errors": errors, "latencies_ms": samples}


def idle(conns: list[Conn], quota: None, p: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Keep many idle worker connections alive: each BEATs once per `beat` seconds,
    the connections' beats spread evenly over the interval."""
    interval = p["beat"]
    count = len(conns)
    beats = [b'BEAT {"wid":"' + conn.wid.encode() + b'"}\r\n' for conn in conns]
    start = time.monotonic()
    due = [start + interval * (k + 1) / count for k in range(count)]
    nxt = 0
    sent = errors = 0
    latencies: list[float] = []
    try:
        while not ctx.stop.is_set():
            now = time.monotonic()
            batch: list[int] = []
            while due[nxt] <= now and len(batch) < count:
                batch.append(nxt)
                due[nxt] += interval
                nxt = (nxt + 1) % count
            for k in batch:
                conns[k].send(beats[k])
            for k in batch:
                if conns[k].item() != _OK:
                    errors += 1
            if batch:
                latencies.append((time.monotonic() - now) * 1000)
                sent += len(batch)
                ctx.add(len(batch))
            ctx.stop.wait(max(0.0, min(0.05, due[nxt] - time.monotonic())))
    except (ConnectionError, OSError):
        if not ctx.stop.is_set():
            raise
    return {"connections": count, "beats": sent, "errors": errors, "beat_round_ms": latencies}


ROLES: dict[str, Callable[[list[Conn], Any, dict[str, Any], Ctx], dict[str, Any]]] = {
    "push": push, "pushb": pushb, "fetch_ack": fetch_ack, "latency_push": latency_push,
    "latency_fetch": latency_fetch, "idle": idle,
}
