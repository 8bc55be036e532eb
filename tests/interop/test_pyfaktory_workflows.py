"""Job dependencies with ``pyfaktory`` 0.2.13 (protocol/spec.md §14; the reference's C-T2 and
C-T14): a 1 → 100 → 1 fan-out / fan-in declared with pyfaktory's own ``Job(custom=…)``. The
last job runs once, after all 100 ACKs, with 100 outcomes in ``custom._after``; every job the
server released has the top-level keys of a job that never waited, and passes pyfaktory's job
model, which forbids unknown top-level keys (once the two timestamps every Faktory server adds
at PUSH, which the model does not declare, are set aside). And C-T13 on our side: a job
declared with ``custom.after: [{"bid": …}]`` runs after every member of the batch, once the
batch reached its success moment (its success callback is enqueued in the same step)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from pyfaktory import Job, Producer
from pyfaktory.models import TargetJob

from test_pyfaktory_batches import batch_new, connect

#: pyfaktory's heartbeat thread may race a disconnect (see tests/interop/test_real_python_clients.py).
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Exception in thread .*\(_heartbeat\)[\s\S]*Client state is State\.(DISCONNECTED|END) "
    r"while ._beat. is only valid in the states:pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def test_pyfaktory_fan_out_fan_in(server_factory, stack: ExitStack) -> None:
    srv = server_factory()
    producer = Producer(client=connect(stack, srv.url))
    worker = connect(stack, srv.url, role="both", wid="pyf-workflow-worker")
    root = Job(jobtype="Split", args=[], queue="wf")
    middle = [Job(jobtype="Page", args=[i], queue="wf", custom={"after": [root.jid]}) for i in range(100)]
    final = Job(jobtype="Merge", args=[], queue="wf", custom={"after": [job.jid for job in middle]})
    for job in [final, *middle, root]:  # the fan-in first: its dependencies are unknown then
        assert producer.push(job) is True
    assert worker.info()["faktory"]["workflows"]["held"] == 101

    ran: list[str] = []
    keys: set[str] = set()
    while (fetched := worker._fetch(["wf"])) is not None:
        keys = keys or set(fetched) | {"custom"}  # the root's (it never waited, and has no custom)
        assert set(fetched) | {"custom"} == keys
        Job.model_validate({k: v for k, v in fetched.items() if k not in ("created_at", "enqueued_at")})
        ran.append(fetched["jid"])
        if fetched["jid"] == final.jid:
            after = fetched["custom"]["_after"]
            assert list(after) == [job.jid for job in middle]
            assert all(entry == {"outcome": "success"} for entry in after.values())
        assert worker._ack(fetched["jid"]) is True
    assert ran[0] == root.jid and ran[-1] == final.jid and len(ran) == 102 and len(set(ran)) == 102
    assert worker.info()["faktory"]["workflows"] == {"held": 0, "released": 101, "killed": 0, "missing": 0}


def test_pyfaktory_dependent_on_a_batch(server_factory, stack: ExitStack) -> None:
    srv = server_factory()
    producer = Producer(client=connect(stack, srv.url))
    worker = connect(stack, srv.url, role="both", wid="pyf-bid-worker")
    bid = batch_new(producer, success=TargetJob(jobtype="PyfOk", args=[], queue="bid-cb"))
    members = [Job(jobtype="Part", args=[i], queue="bid", custom={"bid": bid}) for i in range(3)]
    final = Job(jobtype="Merge", args=[], queue="bid", custom={"after": [{"bid": bid}]})
    for job in [*members[:2], final, members[2]]:
        assert producer.push(job) is True
    assert producer.batch_commit(bid) is True
    assert worker.info()["faktory"]["workflows"]["held"] == 1

    ran: list[str] = []
    while (fetched := worker._fetch(["bid"])) is not None:
        ran.append(fetched["jid"])
        if fetched["jid"] == final.jid:
            assert fetched["custom"]["_after"] == {bid: {"bid": bid, "outcome": "success"}}
            assert worker._fetch(["bid-cb"])["jobtype"] == "PyfOk"  # enqueued in the same step
        assert worker._ack(fetched["jid"]) is True
    assert ran == [*(job.jid for job in members), final.jid]
    assert worker.info()["faktory"]["workflows"] == {"held": 0, "released": 1, "killed": 0, "missing": 0}
