"""Stopping: SIGTERM under load is graceful and exits 0; any other stop exits non-zero.

Through the real CLI process (faktory_py/cli.py `_run`, server/app.py `serve`), except one
in-process test of the exit status after a journal failure, which needs no disk to fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from faktory_py import cli
from faktory_py.server import app as server_module
from helpers.polling import eventually
from helpers.rawclient import RawClient, ReplyError

SHUTDOWN = "ERR shutdown in progress"


def with_grace(server_factory, seconds: float):
    server = server_factory(start=False)
    (server.conf_dir / "conf.d").mkdir()
    (server.conf_dir / "conf.d" / "stop.toml").write_text(f"[faktory_py]\nshutdown_grace = {seconds}\n")
    server.start()
    return server


class Load(threading.Thread):
    """One client repeating `step` until the server answers an error or closes; records why it ended."""

    def __init__(self, port: int, step) -> None:
        super().__init__(daemon=True)
        self.client = RawClient(port)
        assert self.client.handshake() == b"OK"
        self.step = step
        self.ended: str | None = None

    def run(self) -> None:
        try:
            while True:
                self.step(self.client)
        except ReplyError as exc:
            self.ended = str(exc)
        except (ConnectionError, OSError) as exc:
            self.ended = f"closed: {exc!r}"
        finally:
            self.client.close()


@pytest.mark.timeout(120)
def test_sigterm_under_load_answers_everyone_keeps_every_ok_and_exits_0(server_factory) -> None:
    server = with_grace(server_factory, 10)
    pushed: list[str] = []
    fetched: list[str] = []
    acked: list[str] = []
    blocked_answers: list[object] = []

    def pusher(prefix: str):
        count = iter(range(10**9))

        def step(client: RawClient) -> None:
            jid = f"{prefix}-{next(count):08d}"
            assert client.push({"jid": jid, "jobtype": "T", "args": [], "queue": "load"}) == b"OK"
            pushed.append(jid)
        return step

    def fetcher(client: RawClient) -> None:
        job = client.fetch("load")
        if job is not None:
            fetched.append(job["jid"])
            assert client.json_command("ACK", {"jid": job["jid"]}) == b"OK"
            acked.append(job["jid"])

    def blocked(client: RawClient) -> None:  # FETCH on a queue nobody pushes to blocks (2 s)
        blocked_answers.append(client.fetch("nothing-here"))

    loads = [Load(server.port, pusher("a")), Load(server.port, pusher("b")), Load(server.port, fetcher),
             Load(server.port, blocked)]
    late = server.client()
    assert late.handshake() == b"OK"
    for load in loads:
        load.start()
    eventually(lambda: len(pushed) > 200 and len(acked) > 50, 60, "load under way")
    assert server.proc is not None
    answered_before = len(blocked_answers)
    server.proc.send_signal(signal.SIGTERM)
    eventually(lambda: "shutting down" in server.log_text(), 10, "the server to start its stop")
    with pytest.raises(ReplyError, match=SHUTDOWN):
        late.command('PUSH {"jid":"late-job-0001","jobtype":"T","args":[],"queue":"load"}')
    assert late.closed_by_peer()
    late.close()
    for load in loads:
        load.join(30)
    # Every client got an answer to everything it sent, the last one the refusal.
    assert [load.ended for load in loads] == [SHUTDOWN] * 4
    # The FETCH blocked at the signal got its $-1 (then the next one the refusal).
    assert blocked_answers[answered_before:] and set(blocked_answers[answered_before:]) == {None}
    assert server.proc.wait(15) == 0  # the last connection closed: no need to wait out the grace

    server.start()
    with server.client() as after:
        assert after.handshake() == b"OK"
        left = []
        while (job := after.fetch("load")) is not None:
            left.append(job["jid"])
    assert "late-job-0001" not in left
    assert set(pushed) <= set(left) | set(fetched), "an acknowledged PUSH was lost"
    assert not set(acked) & set(left), "an acknowledged ACK was undone"
    assert len(left) == len(set(left)), "a job is queued twice"


@pytest.mark.timeout(60)
def test_idle_connections_are_refused_when_they_speak_and_closed_after_the_grace(server_factory) -> None:
    server = with_grace(server_factory, 3)
    speaks, silent = server.client(), server.client()
    assert speaks.handshake() == b"OK" and silent.handshake() == b"OK"
    assert server.proc is not None
    server.proc.send_signal(signal.SIGINT)
    eventually(lambda: "shutting down" in server.log_text(), 10, "the server to start its stop")
    with pytest.raises(ReplyError, match=SHUTDOWN):
        speaks.command("INFO")
    assert silent.wait_closed() == b""  # closed without a word at the end of the grace
    assert server.proc.wait(15) == 0
    speaks.close()
    silent.close()


def test_a_journal_failure_exits_1_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    """The CLI's own path: a stop caused by the journal (server/durability.py sets `failed`
    on a failure it cannot recover from) is an exit status a supervisor restarts on."""

    async def serve_then_fail(config, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(server_module.serve, config)
            task_status.started(server)
            server.durable.failed.set()

    monkeypatch.setattr(cli, "serve", serve_then_fail)
    argv = ["-b", "127.0.0.1:0", "-w", "0", "-d", str(tmp_path / "data"), "-c", str(tmp_path / "conf")]
    assert cli.main(argv) == 1


@pytest.fixture
def failing_disk(tmp_path: Path) -> Iterator[Path]:
    """An ext4 filesystem on a loop device whose backing file lives on an 8 MiB tmpfs:
    writes land in the page cache and succeed, the fsync that must put them on the
    device fails with EIO once the tmpfs is full (needs root and loop devices)."""
    if os.geteuid() != 0 or shutil.which("losetup") is None or shutil.which("mkfs.ext4") is None:
        pytest.skip("needs root, losetup and mkfs.ext4")
    back, mnt = tmp_path / "back", tmp_path / "mnt"
    back.mkdir()
    mnt.mkdir()

    def run(*cmd: str) -> str:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()

    try:
        run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(back))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc.stderr}")
    device = None
    try:
        run("truncate", "-s", "64m", str(back / "disk.img"))
        run("mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(back / "disk.img"))
        try:
            device = run("losetup", "-f", "--show", str(back / "disk.img"))
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"no loop device: {exc.stderr}")
        run("mount", device, str(mnt))
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        if device is not None:
            subprocess.run(["losetup", "-d", device], capture_output=True)
        subprocess.run(["umount", "-l", str(back)], capture_output=True)


@pytest.mark.timeout(120)
def test_a_failed_fsync_stops_the_server_with_exit_1(server_factory, failing_disk: Path) -> None:
    server = server_factory(start=False, args=("--fsync", "always"))
    server.data_dir = failing_disk / "data"
    server.start()
    blob = "x" * 65536
    with server.client() as client:
        assert client.handshake() == b"OK"
        try:
            for i in range(1000):  # ~64 MiB: far more than the tmpfs under the disk holds
                assert client.push({"jid": f"big-{i:08d}", "jobtype": "T", "args": [blob]}) == b"OK"
            pytest.fail("the disk never failed")
        except (ReplyError, ConnectionError, OSError):
            pass
    assert server.proc is not None
    assert server.proc.wait(30) == 1
    assert "the journal cannot be written any more; stopping" in server.log_text()
