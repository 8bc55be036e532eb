"""The journal's on-disk format: numbered segments of framed msgpack records plus a snapshot.

A data directory holds `snapshot.fj` (optional) and segments `journal.00000001.fj`, ...
Every file is a run of frames, each a 12-byte header and then the msgpack payload:

    offset 0  4 bytes  payload length, big-endian
    offset 4  4 bytes  CRC32 of the payload, big-endian
    offset 8  4 bytes  CRC32 of the 8 bytes before it (length and payload CRC), big-endian
    offset 12          payload

The first frame is a header naming the format and the file's kind; a snapshot's header
also says from which segment replay continues, so compaction never has to rewrite a
segment: it writes a new snapshot beside them and then deletes the segments the snapshot
covers.

This module is plain blocking file I/O and knows nothing of what records mean. Records
are appended and fsynced at the caller's pace; only the newest segment may end in a torn
frame (a write cut short by a crash before it was fsynced), which replay drops. Anywhere
else a bad frame means acknowledged data is damaged, and replay refuses to guess.

A segment's header records the fsync policy it is written under (a restart under another
policy starts a new segment). Under `always` every frame is fsynced before its reply, so a
complete last frame whose payload CRC fails was acknowledged and is damage, not a tear,
unless its payload turns into zeros from a page boundary to its end (the pages of a write
that a power loss kept from the disk before its fsync, so before anyone was answered).

A failed append cuts the file back to its last good frame, so the caller may retry it;
only if that cut fails, or an fsync fails (Linux may drop the unwritten pages and report
success next time), is the journal failed for good (`failure`).

The header's own CRC is what tells the two apart at the end of the newest segment. Each
write is of whole frames, so a crash leaves a prefix of one: fewer than 12 header bytes,
or the real header with its payload cut short. A complete header whose CRC fails was
damaged after it was written (unless it ends in zeros that run to end of file: data that
never reached the disk), and since its length cannot be trusted, nor can any claim that
nothing acknowledged follows it.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import BinaryIO

import msgpack

from ..errors import FaktoryPyError

log = logging.getLogger("faktory_py.journal")

FORMAT = "faktory_py-journal"
VERSION = 2
SNAPSHOT = "snapshot.fj"
_SNAPSHOT_TMP = SNAPSHOT + ".tmp"
_LOCK = "LOCK"
_SEGMENT_NAME = re.compile(r"journal\.(\d{8,})\.fj")
_FRAME_HEAD = struct.Struct(">III")  # length, payload CRC32, CRC32 of those 8 bytes
_CHECKED_HEAD = struct.Struct(">II")  # the part of the header its own CRC covers
_IO_BUFFER = 1 << 20
#: the granularity in which written data reaches the disk (or does not), for the tear rule
_PAGE = 4096


class JournalCorrupt(FaktoryPyError):
    """Replay found damage it must not paper over; the message says which file and where."""

    def __init__(self, path: str, offset: int | None, problem: str) -> None:
        where = "" if offset is None else f" at offset {offset}"
        super().__init__(f"journal {path} is corrupt{where}: {problem}")
        self.path = path
        self.offset = offset
        self.problem = problem


class DataDirectoryInUse(FaktoryPyError):
    """Another process (or another Journal in this one) holds the data directory's lock."""


def encode_frame(record: object) -> bytes:
    """One record as it is stored: 12-byte header (see the module docstring), then msgpack."""
    return frame(msgpack.packb(record, use_bin_type=True))


_ARRAY_HEADER = msgpack.Packer().pack_array_header
#: one Packer per thread, reused: `msgpack.packb` builds a Packer (and its buffer) per call,
#: which costs several times the packing of a command's few ops (every commit comes here);
#: a Packer is not thread-safe, and after a failed `pack` it starts empty again
_PACKERS = threading.local()


def _packer() -> msgpack.Packer:
    try:
        return _PACKERS.packer  # type: ignore[no-any-return]
    except AttributeError:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True)
        return packer


def _array_header_size(count: int) -> int:
    """The bytes of a msgpack array header for `count` items (fixarray, array 16, array 32)."""
    return 1 if count < 16 else 3 if count < 0x10000 else 5


def pack_items(items: list[object]) -> bytes | memoryview:
    """`items` packed as the elements of a msgpack array, without its header, so the items of
    several lists can be joined into one record (`join_items`). Raises TypeError, ValueError or
    OverflowError for what msgpack cannot pack.

    Every commit comes here: a command's few ops (a fixarray, its header one byte) are cut
    from their header by copying the bytes, which costs a third of making a memoryview of
    them; a long list (a MUTATE's or a FLUSH's step) is not copied."""
    count = len(items)
    if count == 1:  # (PUSH, FETCH and ACK of most jobs: the one item packed alone has no header to cut)
        return _packer().pack(items[0])  # type: ignore[no-any-return]
    packed = _packer().pack(items)
    if count < 16:
        return packed[1:]
    return memoryview(packed)[_array_header_size(count):]


def join_items(count: int, parts: Iterable[bytes | memoryview]) -> bytes:
    """One msgpack array of `count` items from `pack_items` parts (for `Journal.append_packed`)."""
    return _ARRAY_HEADER(count) + b"".join(parts)


def frame(payload: bytes) -> bytes:
    """An already packed msgpack payload with its 12-byte frame header."""
    checked = _CHECKED_HEAD.pack(len(payload), zlib.crc32(payload))
    return checked + zlib.crc32(checked).to_bytes(4, "big") + payload


def decode_frame(data: bytes, where: str = "frame") -> object:
    """The record of one whole frame held in a buffer (an op-log entry, store/redis/entries.py).

    No tear is possible here (the buffer arrived whole), so any damage is corruption:
    a bad header CRC, a length that does not match, a bad payload CRC or undecodable
    msgpack raise JournalCorrupt naming `where`.
    """
    records = decode_frames(data, where)
    record = next(records)
    for _ in records:
        raise JournalCorrupt(where, 0, "holds more than one frame")
    return record


def decode_frames(data: bytes, where: str = "frames") -> Iterator[object]:
    """Every record of a buffer of one or more whole frames (a snapshot chunk in Redis),
    each checked as `decode_frame` checks one."""
    view = memoryview(data)
    offset = 0
    while True:
        if len(view) - offset < _FRAME_HEAD.size:
            raise JournalCorrupt(where, offset, "incomplete frame header")
        length, crc, head_crc = _FRAME_HEAD.unpack_from(view, offset)
        if zlib.crc32(view[offset:offset + _CHECKED_HEAD.size]) != head_crc:
            raise JournalCorrupt(where, offset, "frame header crc mismatch")
        start = offset + _FRAME_HEAD.size
        payload = view[start:start + length]
        if len(payload) != length:
            raise JournalCorrupt(where, offset, f"frame says {length} payload bytes, holds {len(payload)}")
        if zlib.crc32(payload) != crc:
            raise JournalCorrupt(where, offset, "crc mismatch")
        try:
            record = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise JournalCorrupt(where, offset, f"undecodable msgpack payload ({exc})") from None
        yield record
        offset = start + length
        if offset == len(view):
            return


def _segment_name(number: int) -> str:
    return f"journal.{number:08d}.fj"


def _header(kind: str, **fields: object) -> dict[str, object]:
    return {"format": FORMAT, "version": VERSION, "kind": kind, **fields}


def _check_header(path: str, header: object, kind: str, **expected: int) -> None:
    if not (isinstance(header, dict) and header.get("format") == FORMAT and header.get("kind") == kind):
        raise JournalCorrupt(path, 0, f"missing or invalid {kind} header")
    if header.get("version") != VERSION:
        raise JournalCorrupt(path, 0, f"unsupported format version {header.get('version')!r}")
    for field, value in expected.items():
        if header.get(field) != value:
            raise JournalCorrupt(path, 0, f"header has {field}={header.get(field)!r}, expected {value!r}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_directory(path: str) -> None:
    """Make created, renamed and deleted names durable, which fsyncing the files does not."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _frames(
    path: str, *, may_tear: bool, strict_last: Callable[[], bool] | None = None
) -> Generator[object, None, int]:
    """Yield every record of a file, header included; return where the good frames end.

    With `may_tear` (the newest segment), a bad frame that a crash could have left
    behind is dropped instead of reported: fewer than 12 header bytes before end of file;
    a good header whose payload is cut short by end of file; or a frame that turns into
    zero bytes up to end of file (the zeros of a file that was extended by a write whose
    data never reached the disk), seen as a header whose CRC fails and that ends in
    zeros, or as a payload whose CRC fails, with only zeros (or nothing) after either.
    When `strict_last()` says the file was written under `fsync always` (it is asked once
    the header has been read), a payload whose CRC fails counts as torn only if it turns
    into zeros from a page boundary to end of file.
    """
    with open(path, "rb", buffering=_IO_BUFFER) as file:
        size = os.fstat(file.fileno()).st_size
        offset = 0
        while offset < size:
            head = file.read(_FRAME_HEAD.size)
            if len(head) < _FRAME_HEAD.size:
                problem, torn = "incomplete frame header", may_tear
            else:
                length, crc, head_crc = _FRAME_HEAD.unpack(head)
                end = offset + _FRAME_HEAD.size + length
                if zlib.crc32(head[:_CHECKED_HEAD.size]) != head_crc:
                    problem = "frame header crc mismatch"
                    # Torn only as zeros from somewhere inside this header to end of file.
                    torn = may_tear and head.endswith(b"\0") and _zeros_from(file, offset + len(head))
                elif end > size:
                    problem, torn = f"frame of {length} bytes runs past end of file", may_tear
                else:
                    payload = file.read(length)
                    if zlib.crc32(payload) != crc:
                        problem = "crc mismatch"
                        if strict_last is not None and strict_last():
                            torn = may_tear and _unwritten_pages(file, offset, end, size)
                        else:
                            torn = may_tear and _zeros_from(file, end)
                    else:
                        try:
                            record = msgpack.unpackb(payload, raw=False, strict_map_key=False)
                        except (ValueError, TypeError, msgpack.UnpackException) as exc:
                            # Both CRCs hold, so this is what was written: never a tear.
                            problem, torn = f"undecodable msgpack payload ({exc})", False
                        else:
                            yield record
                            offset = end
                            continue
            if not torn:
                raise JournalCorrupt(path, offset, problem)
            log.warning(
                "journal %s: dropping torn frame at offset %d (%s); truncating the file there",
                path, offset, problem,
            )
            return offset
        return offset


def _unwritten_pages(file: BinaryIO, start: int, end: int, size: int) -> bool:
    """A frame at `start`..`end` whose payload is zeros from a page boundary to end of file."""
    boundary = max(-(-start // _PAGE) * _PAGE, start + _FRAME_HEAD.size)
    if boundary >= end:
        return False
    file.seek(boundary)
    return _zeros_from(file, boundary)


def _zeros_from(file: BinaryIO, offset: int) -> bool:
    file.seek(offset)
    while chunk := file.read(_IO_BUFFER):
        if chunk.count(0) != len(chunk):
            return False
    return True


class Journal:
    """An open data directory: replay it once with `replay()`, then append to it.

    Positions (what `append` returns and `fsync` covers) count the record bytes appended
    since open, across segments, so a caller can wait for the fsync that covers its own.

    Threading: `append`, `append_many`, `rotate` and `close` must not run concurrently
    with each other (the caller's event loop owns them). `fsync` may run in a worker
    thread at any time, and one `write_snapshot` at a time in a worker thread while
    appends go on.
    """

    def __init__(self, directory: str, lock_fd: int, fsync: str = "everysec") -> None:
        """Use `Journal.open`, which takes the directory lock this object then owns."""
        self.directory = directory
        #: the fsync policy the caller follows, recorded in each new segment's header
        self.fsync_policy = fsync
        self._lock_fd: int | None = lock_fd
        # Guards the segment fd swap and the segment bookkeeping shared with the fsync
        # and snapshot threads; never held across blocking I/O.
        self._lock = threading.Lock()
        self._replay_started = False
        self._fd: int | None = None
        self._segment = 0
        self._size = 0  # bytes in the current segment
        self._sealed: dict[int, int] = {}  # size of each older segment not yet in a snapshot
        self._snapshot_next = 1
        self._position = 0
        self._failure: OSError | None = None
        self._newest_policy: object = None  # the fsync policy in the newest segment's header

    @classmethod
    def open(cls, path: str | os.PathLike[str], fsync: str = "everysec") -> Journal:
        """Create the directory if needed and lock it against other processes.

        `fsync` is the policy appends will be fsynced under (see the module docstring).
        """
        directory = os.fspath(path)
        try:
            os.makedirs(directory)
        except FileExistsError:
            pass
        else:
            _fsync_directory(os.path.dirname(os.path.abspath(directory)))
        lock_fd = os.open(os.path.join(directory, _LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise DataDirectoryInUse(f"data directory {directory} is in use by another process") from None
        try:
            # Left by a compaction that crashed before its rename; the old snapshot stands.
            os.unlink(os.path.join(directory, _SNAPSHOT_TMP))
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(directory, lock_fd, fsync)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def replay(self) -> Iterator[object]:
        """Every record to rebuild state from, in order: the snapshot's, then each segment's.

        Must be iterated to the end before appending: only then is the torn tail (if
        any) cut off and the newest segment opened for appends. Raises JournalCorrupt.
        """
        if self._replay_started:
            raise RuntimeError("the journal has already been replayed")
        self._replay_started = True
        return self._replay()

    def _replay(self) -> Iterator[object]:
        snapshot_path = self._path(SNAPSHOT)
        snapshot = None
        if os.path.exists(snapshot_path):
            snapshot = _frames(snapshot_path, may_tear=False)
            header = next(snapshot, None)
            _check_header(snapshot_path, header, "snapshot")
            self._snapshot_next = header.get("next_segment")
            if not isinstance(self._snapshot_next, int) or self._snapshot_next < 1:
                raise JournalCorrupt(snapshot_path, 0, f"bad next_segment {self._snapshot_next!r}")
        first = self._snapshot_next
        numbers = self._segment_numbers()
        live = [n for n in numbers if n >= first]
        for expected, number in zip(itertools.count(first), live):
            if expected != number:
                raise JournalCorrupt(
                    self.directory, None, f"segment {_segment_name(expected)} is missing"
                )
        stale = [n for n in numbers if n < first]
        if stale:
            # The snapshot covering them may be a rename not yet durable.
            _fsync_directory(self.directory)
            for number in stale:
                os.unlink(self._path(_segment_name(number)))

        if snapshot is not None:
            yield from snapshot
        end = 0
        for number in live:
            path = self._path(_segment_name(number))
            end = yield from self._segment_records(path, number, last=number == live[-1])
            if number != live[-1]:
                self._sealed[number] = end
        self._open_segment(live[-1] if live else first, end)

    def _segment_records(self, path: str, number: int, *, last: bool) -> Generator[object, None, int]:
        header: object = None
        frames = _frames(path, may_tear=last,
                         strict_last=lambda: isinstance(header, dict) and header.get("fsync") == "always")
        try:
            header = next(frames)
        except StopIteration as empty:  # an empty segment, or a torn header in the newest
            if not last:  # sealed segments are fsynced with their header before the next exists
                raise JournalCorrupt(path, 0, "empty segment (its header is missing)") from None
            if os.path.getsize(path) == 0:
                log.warning("journal segment %s is empty (0 bytes): there is nothing in it to replay", path)
            return empty.value
        _check_header(path, header, "segment", segment=number)
        if last:
            self._newest_policy = header.get("fsync")
        return (yield from frames)

    def _open_segment(self, number: int, keep: int) -> None:
        """Open segment `number` for appends, cut to its first `keep` good bytes.

        A segment written under another fsync policy is sealed instead, and appends go to
        a new one: its header must tell replay which tear rule applies to all of it.
        """
        fd = os.open(self._path(_segment_name(number)), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size > keep:
                os.ftruncate(fd, keep)
                os.fsync(fd)
            if keep and self._newest_policy != self.fsync_policy:
                os.fsync(fd)  # sealed before the next segment exists (see rotate)
                os.close(fd)
                fd = -1
                self._sealed[number] = keep
                number, keep = number + 1, 0
                fd = os.open(self._path(_segment_name(number)), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if keep == 0:
                keep = self._write_header(fd, number)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        with self._lock:
            self._fd, self._segment, self._size = fd, number, keep

    def _write_header(self, fd: int, number: int) -> int:
        header = encode_frame(_header("segment", segment=number, fsync=self.fsync_policy))
        _write_all(fd, header)
        os.fsync(fd)
        _fsync_directory(self.directory)
        return len(header)

    def append(self, record: object) -> int:
        """Write one record; returns the journal position an fsync must reach to cover it."""
        return self._write(encode_frame(record))

    def append_many(self, records: Iterable[object]) -> int:
        """Write several records with one write; returns the position after the last."""
        return self._write(b"".join(map(encode_frame, records)))

    def append_packed(self, payload: bytes) -> int:
        """Write one record given as its msgpack bytes; returns the position after it."""
        return self._write(frame(payload))

    @property
    def failure(self) -> OSError | None:
        """Why the journal cannot be written any more (an fsync or a cut failed), if so."""
        return self._failure

    def _write(self, data: bytes) -> int:
        """Append whole frames; if that fails, the file is cut back to where it was."""
        fd = self._writable_fd()
        try:
            _write_all(fd, data)
        except OSError:
            # A partial frame followed by later ones would read as corruption; cut it off.
            try:
                os.ftruncate(fd, self._size)
            except OSError as exc:
                self._failure = exc
            raise
        self._size += len(data)
        self._position += len(data)
        return self._position

    def fsync(self) -> int:
        """Flush the current segment to disk; returns the position now durable.

        Works on a duplicate of the fd, so a concurrent `rotate` or `close` can swap or
        close the original; `rotate` fsyncs the old segment itself before the swap, so
        the position read here is covered either way. Only a failed fsync fails the
        journal; an error before it (`os.dup` at the descriptor limit) may be retried.
        """
        with self._lock:
            fd = os.dup(self._writable_fd())
            position = self._position
        try:
            self._fsync(fd)
        finally:
            os.close(fd)
        return position

    def _fsync(self, fd: int) -> None:
        """fdatasync: it flushes the appended bytes and the file size that reading them needs,
        without the timestamps an fsync writes too (under `fsync always` every reply waits
        for one, and on a busy disk it is the shorter wait, most of all at the tail; new
        names are fsynced in their directory)."""
        try:
            os.fdatasync(fd)
        except OSError as exc:
            # Linux may drop the unwritten pages and report success next time: no retry.
            self._failure = exc
            raise

    @property
    def bytes_since_snapshot(self) -> int:
        """Size of the segments a replay reads after the snapshot: what compaction saves."""
        with self._lock:
            return self._size + sum(self._sealed.values())

    def rotate(self) -> int:
        """Seal the current segment (fsynced) and continue in a new one; returns its number.

        The old segment is fsynced before the new one exists, so only the newest
        segment can ever hold a torn frame. If the new one cannot be started (no space
        for its header), it is removed again and appends go on in the old one.
        """
        old_fd = self._writable_fd()
        self._fsync(old_fd)
        number = self._segment + 1
        path = self._path(_segment_name(number))
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            size = self._write_header(fd, number)
        except OSError:
            os.close(fd)
            self._remove_new_segment(path)
            raise
        with self._lock:
            self._sealed[self._segment] = self._size
            self._fd, self._segment, self._size = fd, number, size
        os.close(old_fd)
        return number

    def _remove_new_segment(self, path: str) -> None:
        """Undo a segment that could not be started; the old one stays the newest."""
        try:
            os.unlink(path)
            _fsync_directory(self.directory)
        except OSError as exc:
            # The new file may survive a crash as the newest segment, so appends must not
            # go on in the old one: it could then end in a torn frame that is not last.
            self._failure = exc
            raise

    def write_snapshot(self, records: Iterable[object], next_segment: int) -> int:
        """Write `records` as the new snapshot, replacing segments before `next_segment`.

        Blocking; meant for a worker thread while appends continue in segment
        `next_segment` or later (typically `next_segment = rotate()`, with `records`
        describing the state at that moment). `records` is consumed in the calling
        thread. Until the atomic rename the old snapshot and segments stay complete;
        after it the new snapshot is, so a crash anywhere leaves a loadable directory.
        Returns the snapshot's size in bytes.
        """
        with self._lock:
            self._writable_fd()
            if not self._snapshot_next <= next_segment <= self._segment:
                raise ValueError(
                    f"next_segment must be between {self._snapshot_next} and {self._segment}, got {next_segment}"
                )
        tmp = self._path(_SNAPSHOT_TMP)
        size = 0
        try:
            with open(tmp, "wb", buffering=_IO_BUFFER) as file:
                for record in itertools.chain([_header("snapshot", next_segment=next_segment)], records):
                    size += file.write(encode_frame(record))
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self._path(SNAPSHOT))
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_directory(self.directory)
        for number in self._segment_numbers():
            if number < next_segment:
                os.unlink(self._path(_segment_name(number)))
        with self._lock:
            self._snapshot_next = next_segment
            self._sealed = {n: s for n, s in self._sealed.items() if n >= next_segment}
        return size

    def close(self) -> None:
        """Fsync and close the current segment and release the directory. Idempotent."""
        with self._lock:
            fd, self._fd = self._fd, None
        try:
            if fd is not None:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _writable_fd(self) -> int:
        if self._failure is not None:
            raise RuntimeError(f"journal {self.directory} failed earlier and cannot be written") from self._failure
        if self._fd is None:
            raise RuntimeError("journal is not writable: replay() has not finished, or it was closed")
        return self._fd

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _segment_numbers(self) -> list[int]:
        return sorted(
            int(match.group(1))
            for name in os.listdir(self.directory)
            if (match := _SEGMENT_NAME.fullmatch(name))
        )
