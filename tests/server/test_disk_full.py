"""A full disk, for real: the CLI server's data directory on a small tmpfs the test mounts.

The server must stay up, refuse writes with `-MISCONF …` (protocol/spec.md §7), keep
answering INFO and the web UI's pages, resume by itself once space is freed, and lose
nothing it acknowledged across a `kill -9`; a compaction that runs out of space is cleaned
up and retried without stopping or degrading it. Mounting needs root: elsewhere the tests
skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import errno
import json
import os
import select
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.servers import ServerProcess
from faktory_py.tools import processes
from helpers.polling import eventually
from helpers.rawclient import RawClient, ReplyError

MISCONF = ("MISCONF journal write failed: [Errno 28] No space left on device; "
           "refusing writes until it can be written")
DEGRADED = "writing the journal failed ([Errno 28] No space left on device)"
RESUMED = "the journal is written again"
ARGS = ["x" * 1000]  # ~1 KB per job, so a few pages hold a few jobs


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards (lazily: a killed server may still hold it)."""
    if os.geteuid() != 0:
        reason = "mounting a small tmpfs needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: this test must run)")
        pytest.skip(reason)
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def servers(tmp_path: Path, small_fs: Path) -> Iterator:
    """`servers(**conf)`: a CLI server (web UI on) whose data directory is on `small_fs`;
    `conf` becomes its conf.d `[faktory_py]` table."""
    made = processes.factory(ServerProcess, tmp_path, "server", web=True)
    new = next(made)

    def start(**conf: int) -> ServerProcess:
        server = new(args=("-d", str(small_fs / "data")), start=False)
        (server.conf_dir / "conf.d").mkdir(exist_ok=True)
        lines = "".join(f"{key} = {value}\n" for key, value in conf.items())
        (server.conf_dir / "conf.d" / "journal.toml").write_text("[faktory_py]\n" + lines)
        server.start()
        return server

    yield start
    next(made, None)


def fill(mount: Path, leave: int = 0) -> Path:
    """A file taking all of the filesystem's free space but `leave` bytes."""
    filler = mount / "filler"
    with open(filler, "wb", buffering=0) as file:
        for chunk in (1 << 16, 4096, 1):
            try:
                while os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize - chunk >= leave:
                    file.write(bytes(chunk))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def job(n: int) -> dict[str, object]:
    return {"jid": f"job-{n:012d}", "jobtype": "T", "args": ARGS, "queue": "q"}


def client(server: ServerProcess) -> RawClient:
    c = server.client()
    assert c.handshake() == b"OK"
    return c


def answered_or_logged(c: RawClient, server: ServerProcess, line: str) -> str:
    """Wait until `c` has a reply to read, or the server log shows `line`."""
    def check() -> str | None:
        if select.select([c.sock], [], [], 0.02)[0]:
            return "reply"
        return "logged" if line in server.log_text() else None
    return eventually(check, 20, f"a reply or {line!r} in the log", interval=0)


def replayed_jids(server: ServerProcess) -> set[str]:
    with client(server) as c:
        size = c.info()["faktory"]["queues"].get("q", 0)
        return {c.fetch("q")["jid"] for _ in range(size)}


@pytest.mark.timeout(120)
def test_a_full_disk_refuses_writes_keeps_reads_and_resumes(servers, small_fs: Path) -> None:
    server = servers()
    acked: set[str] = set()
    with client(server) as pusher, client(server) as other:
        for n in range(5):
            assert pusher.push(job(n)) == b"OK"
            acked.add(job(n)["jid"])
        filler = fill(small_fs)
        n = 5
        while True:  # the last pages of the segment still take a few
            pusher.send(b"PUSH " + json.dumps(job(n)).encode() + b"\r\n")
            if answered_or_logged(pusher, server, DEGRADED) == "logged":
                break
            assert pusher.reply() == b"OK"
            acked.add(job(n)["jid"])
            n += 1
        waiting = job(n)["jid"]  # its +OK waits for the journal

        assert server.proc.poll() is None
        for command in ["PUSH " + json.dumps(job(n + 1)), "FETCH q", f'ACK {{"jid":"{waiting}"}}',
                        "QUEUE PAUSE q", "FLUSH"]:
            with pytest.raises(ReplyError) as refused:
                other.command(command)
            assert str(refused.value) == MISCONF, command
        assert other.info()["faktory"]["queues"]["q"] == n + 1  # reads are answered
        assert urllib.request.urlopen(server.web_url + "/", timeout=10).status == 200
        with pytest.raises(urllib.error.HTTPError) as action:
            urllib.request.urlopen(urllib.request.Request(
                server.web_url + "/queues?name=q", data=urllib.parse.urlencode({"action": "pause"}).encode()),
                timeout=10)
        assert action.value.code == 503 and MISCONF.removeprefix("MISCONF ") in action.value.read().decode()
        assert not select.select([pusher.sock], [], [], 0)[0]  # still no +OK for the waiting push

        filler.unlink()  # space again: the server resumes by itself
        assert pusher.reply() == b"OK"
        acked.add(waiting)
        assert RESUMED in server.log_text()
        for m in range(n + 1, n + 6):
            assert other.push(job(m)) == b"OK"
            acked.add(job(m)["jid"])

    server.kill()
    assert replayed_jids(servers()) == acked


@pytest.mark.timeout(120)
def test_a_compaction_without_room_for_its_snapshot_is_retried_later(servers, small_fs: Path) -> None:
    server = servers(compact_min_bytes=50_000)
    acked: set[str] = set()
    with client(server) as c:
        for n in range(30):  # ~33 KB journaled: no compaction yet
            assert c.push(job(n)) == b"OK"
            acked.add(job(n)["jid"])
        filler = fill(small_fs, leave=30_000)  # room for appends, not for a ~55 KB snapshot
        n = 30
        segments = small_fs / "data"
        # Push until the journal passes the threshold, then wait for the compaction to try:
        # it runs in the background, and pushing on meanwhile would fill the room left.
        while sum(p.stat().st_size for p in segments.glob("journal.*.fj")) <= 50_000:
            assert c.push(job(n)) == b"OK"
            acked.add(job(n)["jid"])
            n += 1
            assert n < 70, server.log_text()
        eventually(lambda: "journal compaction failed ([Errno 28] No space left on device)" in server.log_text(),
                   20, "the compaction to run out of space")
        assert sorted(p.name for p in (small_fs / "data").iterdir() if ".tmp" in p.name) == []
        assert DEGRADED not in server.log_text() and server.proc.poll() is None
        for m in range(n, n + 5):  # the server goes on as before
            assert c.push(job(m)) == b"OK"
            acked.add(job(m)["jid"])
        filler.unlink()
        n += 5
        while "journal compacted" not in server.log_text():  # retried once the journal doubled
            assert c.push(job(n)) == b"OK"
            acked.add(job(n)["jid"])
            n += 1
            assert n < 400, server.log_text()
    assert (small_fs / "data" / "snapshot.fj").exists()
    server.kill()
    assert replayed_jids(servers(compact_min_bytes=50_000)) == acked
