"""The job payload: decoding with Faktory's strictness, validation, and canonical JSON.

Faktory decodes every job into a fixed Go struct and re-encodes it, so clients see the
server's field order, unknown top-level keys dropped and empty optional fields omitted
(protocol/spec.md §4). We do the same: a job is held as a plain dict in canonical
field order that is never mutated after creation (a change makes a new dict), which lets
the store snapshot its containers with shallow copies.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import ClientError
from ..util import jsoncodec
from ..util.timefmt import format_time, parse_time

#: Field order of Faktory's Job struct, which is the order of re-encoded jobs.
FIELD_ORDER = (
    "retry", "failure", "custom", "jid", "queue", "jobtype", "created_at",
    "enqueued_at", "at", "args", "reserve_for", "backtrace",
)
#: Fields left out of the encoding when empty or zero (Go's `omitempty`).
_OMIT_WHEN_EMPTY = ("failure", "custom", "created_at", "enqueued_at", "at", "reserve_for", "backtrace")

#: (JSON type accepted, Go type name used in decode errors) per field.
_FIELD_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "jid": (str, "string"),
    "queue": (str, "string"),
    "jobtype": (str, "string"),
    "created_at": (str, "string"),
    "enqueued_at": (str, "string"),
    "at": (str, "string"),
    "args": (list, "[]interface {}"),
    "custom": (dict, "map[string]interface {}"),
    "failure": (dict, "client.Failure"),
    "retry": (int, "int"),
    "reserve_for": (int, "int"),
    "backtrace": (int, "int"),
}
#: (field, JSON type, Go type) in FIELD_ORDER: what `decode_job` walks for every PUSH
_ORDERED_TYPES = tuple((field, *_FIELD_TYPES[field]) for field in FIELD_ORDER)
#: The same for the fields of a job's `failure` block (Faktory's client.Failure struct):
#: a client may send one (e.g. a job moved between servers), and FAIL computes with it.
_FAILURE_TYPES: dict[str, tuple[type, str]] = {
    "retry_count": (int, "int"),
    "remaining": (int, "int"),
    "failed_at": (str, "string"),
    "next_at": (str, "string"),
    "message": (str, "string"),
    "errtype": (str, "string"),
    "backtrace": (list, "[]string"),
}
#: Go's `int`: a larger number is a decode error there, and here it could overflow what the
#: journal packs once FAIL adds to it
_GO_INT = range(-(1 << 63), 1 << 63)

DEFAULT_RETRY = 25
MAX_RESERVE_FOR = 86400
MIN_RESERVE_FOR = 60
DEFAULT_RESERVE_FOR = 1800
QUEUE_NAME = re.compile(r"[a-zA-Z0-9._-]+")


def _json_kind(value: Any) -> str:
    """Name a JSON value's type the way Go's decoder does in its error messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {json.dumps(value)}" if isinstance(value, float) else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def decode_json(text: str) -> Any:
    """Parse a client's JSON (`jsoncodec.decode`), raising ClientError with Faktory's `invalid JSON:` prefix."""
    try:
        return jsoncodec.decode(text)
    except jsoncodec.InvalidJSON as exc:
        raise ClientError(f"invalid JSON: {exc}") from None


def decode_argument(arg: str, invalid: str) -> Any:
    """A command's JSON argument (`jsoncodec.decode`), refused as `<invalid> <arg>` (`invalid ACK …`)."""
    try:
        return jsoncodec.decode(arg)
    except jsoncodec.InvalidJSON:
        raise ClientError(f"{invalid} {arg}") from None


def decode_job(raw: Any) -> dict[str, Any]:
    """Coerce a decoded JSON value into a canonical job dict, with Go-like type strictness.

    Only known fields are kept; `null` means absent. Integers must be JSON integers
    (Go refuses `2.5` and `true` for an int) within Go's int64. A `failure` block is
    checked the same way (its fields set to `null` are dropped), its other keys kept.
    """
    if not isinstance(raw, dict):
        raise ClientError(f"invalid JSON: json: cannot unmarshal {_json_kind(raw)} into Go value of type client.Job")
    job: dict[str, Any] = {}
    for field, expected, go_type in _ORDERED_TYPES:
        value = raw.get(field)
        if value is None:
            continue
        if type(value) is not expected or (expected is int and value not in _GO_INT):  # (the usual case is cheap)
            _check_type(value, expected, go_type, f"Job.{field}")
        job[field] = value
    failure = job.get("failure")
    if failure is not None:
        failure = job["failure"] = {k: v for k, v in failure.items() if v is not None}
        for field, (expected, go_type) in _FAILURE_TYPES.items():
            value = failure.get(field)
            if value is not None:
                _check_type(value, expected, go_type, f"Job.failure.{field}")
        for line in failure.get("backtrace", ()):
            _check_type(line, str, "string", "Job.failure.backtrace")
    return job


def _check_type(value: Any, expected: type | tuple[type, ...], go_type: str, where: str) -> None:
    if (not isinstance(value, expected) or (expected is int and isinstance(value, bool))
            or (expected is int and value not in _GO_INT)):
        kind = _json_kind(value)
        if expected is int and isinstance(value, int) and not isinstance(value, bool):
            kind = f"number {value}"
        raise ClientError(f"invalid JSON: json: cannot unmarshal {kind} into Go struct field {where} of type {go_type}")


#: field → the exact type `decode_push`'s fast path takes for it as it is (a `failure` block,
#: whose own fields need checking and cleaning, always goes through `decode_job`)
_EXACT_TYPES: dict[str, type | None] = {field: expected for field, (expected, _go) in _FIELD_TYPES.items()
                                        if isinstance(expected, type)}
_EXACT_TYPES["failure"] = None


def decode_push(raw: Any, now: float) -> tuple[dict[str, Any], float | None]:
    """`prepare_push(decode_job(raw), now)`, the job a PUSH stores and when it is scheduled for.

    Every PUSH comes here, and most jobs have every known field of its exact type: for
    those `prepare_push`, which reads only the known fields and copies them into a new
    dict, takes the client's object as it is, and `decode_job`'s copy is skipped. Any
    other job (a null, a wrong type, an int beyond Go's, a `failure` block) is decoded
    field by field as before, so its errors are the same."""
    if type(raw) is dict:
        exact = _EXACT_TYPES
        for key, value in raw.items():
            kind = exact.get(key, object)
            if kind is object:  # a field Faktory does not know: dropped
                continue
            if type(value) is not kind or (kind is int and value not in _GO_INT):
                break
        else:
            return prepare_push(raw, now)
    return prepare_push(decode_job(raw), now)


def prepare_push(job: dict[str, Any], now: float) -> tuple[dict[str, Any], float | None]:
    """Validate a decoded job for PUSH and fill defaults.

    Returns the job to store and the unix time it is scheduled for (None: enqueue now,
    and the job already carries its `enqueued_at`).
    The order of checks follows Faktory so the first error reported is the same.
    """
    jid = job.get("jid", "")
    if len(jid) < 8:
        raise ClientError("jobs must have a reasonable jid parameter")
    if not job.get("jobtype"):
        raise ClientError("jobs must have a jobtype parameter")
    if "args" not in job:
        raise ClientError("jobs must have an args parameter")
    if job.get("reserve_for", 0) > MAX_RESERVE_FOR:
        raise ClientError("jobs cannot be reserved for more than one day")
    stamp = format_time(now)
    queue = job.get("queue") or "default"
    at = job.get("at")
    scheduled_for = None
    if at:
        try:
            when = parse_time(at)
        except ValueError as exc:
            raise ClientError(f"invalid timestamp for 'at': {json.dumps(at)}: {exc}") from None
        if when > now:
            scheduled_for = when
    check_queue_name(queue)
    # The defaults over the decoded job, in one canonical copy: `canonical` spelled out field
    # by field (FIELD_ORDER; `decode_job` left no None), as every PUSH builds one.
    get = job.get
    out: dict[str, Any] = {"retry": get("retry", DEFAULT_RETRY)}
    if failure := get("failure"):
        out["failure"] = failure
    if custom := get("custom"):
        out["custom"] = custom
    out["jid"] = jid
    out["queue"] = queue
    out["jobtype"] = job["jobtype"]
    out["created_at"] = get("created_at") or stamp
    if scheduled_for is None:
        out["enqueued_at"] = stamp
    if at:
        out["at"] = at
    out["args"] = job["args"]
    if reserve_for := get("reserve_for"):
        out["reserve_for"] = reserve_for
    if backtrace := get("backtrace"):
        out["backtrace"] = backtrace
    return out, scheduled_for


def check_queue_name(name: str) -> None:
    """Faktory refuses to create a queue whose name is not `[a-zA-Z0-9._-]+`. (Every PUSH
    asks: the names found valid are remembered, up to `_VALID_QUEUES_MAX` of them.)"""
    if name in _VALID_QUEUES:
        return
    if not QUEUE_NAME.fullmatch(name):
        raise ClientError(
            f'cannot get "{name}" queue: queue names must match \\A[a-zA-Z0-9._-]+\\z'
        )
    if len(_VALID_QUEUES) < _VALID_QUEUES_MAX:
        _VALID_QUEUES.add(name)


#: queue names `check_queue_name` found valid (bounded: a client may name any number)
_VALID_QUEUES: set[str] = set()
_VALID_QUEUES_MAX = 1024
_ABSENT = object()


def canonical(job: dict[str, Any]) -> dict[str, Any]:
    """Return the job with fields in Faktory's order and empty optional fields dropped."""
    return {field: value for field in FIELD_ORDER
            if (value := job.get(field, _ABSENT)) is not _ABSENT and (value or field not in _OMIT_WHEN_EMPTY)}


def with_fields(job: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of `job` with fields changed (jobs are never mutated in place)."""
    updated = dict(job)
    updated.update(changes)
    return canonical(updated)


def encode_job(job: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as clients and MUTATE's substring/glob filters expect."""
    return jsoncodec.dumps(job)


def log_fields(job: dict[str, Any]) -> dict[str, Any]:
    """A log record's `extra` for a line about `job`: the JSON log format (`--log-format json`)
    writes them as fields of their own, so a log search can find every line about a jid."""
    return {"jid": job.get("jid"), "jobtype": job.get("jobtype"), "queue": job.get("queue")}


def reservation_seconds(job: dict[str, Any]) -> int:
    """How long a fetched job is reserved: `reserve_for` clamped to [60, 86400], 0 ⇒ 1800."""
    value = job.get("reserve_for", 0)
    if value <= 0:
        return DEFAULT_RESERVE_FOR if value == 0 else MIN_RESERVE_FOR
    return max(MIN_RESERVE_FOR, min(MAX_RESERVE_FOR, value))
