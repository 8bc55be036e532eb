"""kill -9 of a faktory_py process whose op log is in Redis: everything it answered +OK is
there when it starts again on the same Redis (after waiting out its own dead lease), ACKed
jobs do not come back and reserved ones stay reserved. Same bookkeeping as the journal's
SIGKILL test (test_durability.py): every jid is accounted for."""

from __future__ import annotations

import json
import threading

from helpers.rawclient import RawClient
from helpers.redis import redis_conf
from helpers.servers import ServerProcess

QUEUE = "durable"
PRODUCERS = 4


def connect(server: ServerProcess, **hello: object) -> RawClient:
    c = server.client()
    assert c.handshake(**hello) == b"OK"
    return c


def make_job(jid: str) -> dict[str, object]:
    return {"jid": jid, "jobtype": "Durable", "args": [jid], "queue": QUEUE, "reserve_for": 600}


def redis_server_process(server_factory, redis_store: str) -> ServerProcess:  # type: ignore[no-untyped-def]
    server = server_factory(args=("--store", redis_store), start=False)
    redis_conf(server.conf_dir)
    server.start()
    return server


def test_sigkill_loses_nothing_acknowledged_on_redis(server_factory, redis_store) -> None:  # type: ignore[no-untyped-def]
    server = redis_server_process(server_factory, redis_store)
    with connect(server) as c:
        c.send(b"".join(f"PUSH {json.dumps(make_job(f'init-{i:06d}'))}\r\n".encode() for i in range(500)))
        assert all(c.reply() == b"OK" for _ in range(500))
    with connect(server, wid="acker") as c:
        acked = [c.fetch(QUEUE)["jid"] for _ in range(100)]  # type: ignore[index]
        for jid in acked:
            assert c.json_command("ACK", {"jid": jid}) == b"OK"
    inflight_conn = connect(server, wid="crashing-worker")
    inflight = [inflight_conn.fetch(QUEUE)["jid"] for _ in range(20)]  # type: ignore[index]

    # producers still pushing when the process is killed: each remembers what got +OK
    confirmed: list[list[str]] = [[] for _ in range(PRODUCERS)]
    unconfirmed: list[set[str]] = [set() for _ in range(PRODUCERS)]
    going = threading.Barrier(PRODUCERS + 1)

    def produce(n: int) -> None:
        with connect(server) as c:
            going.wait()
            for i in range(1_000_000):
                jid = f"extra-{n}-{i:06d}"
                unconfirmed[n].add(jid)
                try:
                    if c.push(make_job(jid)) != b"OK":
                        return
                except (ConnectionError, OSError):
                    return
                unconfirmed[n].discard(jid)
                confirmed[n].append(jid)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(PRODUCERS)]
    for t in threads:
        t.start()
    going.wait()
    while sum(map(len, confirmed)) < 200:
        threading.Event().wait(0.01)
    server.kill()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    inflight_conn.close()

    server.start()  # the same Redis; waits for the dead process's lease to expire
    extra_ok = {jid for jids in confirmed for jid in jids}
    maybe = set().union(*unconfirmed)
    with connect(server) as c:
        f = c.info()["faktory"]
        assert f["sets"]["working"] == 20
        queued = f["queues"][QUEUE]
        assert 380 + len(extra_ok) <= queued <= 380 + len(extra_ok) + len(maybe)
        c.send(b"".join(f"FETCH {QUEUE}\r\n".encode() for _ in range(queued)))
        drained = [json.loads(c.reply())["jid"] for _ in range(queued)]
    remaining = {f"init-{i:06d}" for i in range(500)} - set(acked) - set(inflight)
    assert len(set(drained)) == len(drained), "a job came back twice"
    assert set(drained) >= remaining | extra_ok, "an acknowledged PUSH was lost"
    assert set(drained) <= remaining | extra_ok | maybe
    assert not set(drained) & set(acked), "an ACKed job came back"
    assert not set(drained) & set(inflight), "a reserved job was handed out again"
    for jids in confirmed:  # each producer's jobs still in its order
        position = {jid: i for i, jid in enumerate(drained)}
        assert [position[j] for j in jids] == sorted(position[j] for j in jids)
    assert "Traceback" not in server.log_text()
