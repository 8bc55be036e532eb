"""The job payload: decoding with Faktory's strictness, validation, and canonical JSON.

Faktory decodes every job into a fixed Go struct and re-encodes it, so clients see the
server's field order, unknown top-level keys dropped and empty optional fields omitted
(faktory-protocol.md §4). We do the same: a job is held as a plain dict in canonical
field order that is never mutated after creation (a change makes a new dict), which lets
the store snapshot its containers with shallow copies.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .timefmt import format_time, parse_time
from . import jsoncodec

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

DEFAULT_RETRY = 25
MAX_RESERVE_FOR = 86400
MIN_RESERVE_FOR = 60
DEFAULT_RESERVE_FOR = 1800
QUEUE_NAME = re.compile(r"[a-zA-Z0-9._-]+")


class JobError(Exception):
    """A job (or request about jobs) the client got wrong.

    `code` is the RESP error code; `str(e)` the message after it, exactly as Faktory words it.
    """

    def __init__(self, message: str, code: str = "ERR") -> None:
        super().__init__(message)
        self.code = code

    @property
    def line(self) -> str:
        """The text a PUSHB result map carries for this error (code included unless ERR)."""
        return str(self) if self.code == "ERR" else f"{self.code} {self}"


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


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def decode_json(text: str) -> Any:
    """Parse one JSON document, raising JobError with Faktory's `invalid JSON:` prefix.

    A `\\udXXX` escape without its pair decodes to a lone surrogate, which cannot be
    encoded as UTF-8 (nor stored): like Go, we turn it into U+FFFD.
    """
    try:
        return jsoncodec.loads(text, _decode_carefully)
    except (ValueError, RecursionError) as exc:
        raise JobError(f"invalid JSON: {exc}") from None


def _decode_carefully(text: str) -> Any:
    """The standard library's decoder, for what orjson refuses (its errors read like Go's)."""
    value = _DECODER.decode(text)
    if _SURROGATE_ESCAPE.search(text):
        value = _replace_surrogates(value)
    return value


def _reject_constant(name: str) -> Any:
    """`NaN`/`Infinity` are not JSON: Python's decoder takes them, Go's does not, and
    echoing them back in a FETCH would break every client's JSON parser."""
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def _finite_float(text: str) -> float:
    """A number too large for a float64 (`1e400`) is an error in Go, not infinity."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"cannot unmarshal number {text} into a float64")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def decode_job(raw: Any) -> dict[str, Any]:
    """Coerce a decoded JSON value into a canonical job dict, with Go-like type strictness.

    Only known fields are kept; `null` means absent. Integers must be JSON integers
    (Go refuses `2.5` and `true` for an int).
    """
    if not isinstance(raw, dict):
        raise JobError(f"invalid JSON: json: cannot unmarshal {_json_kind(raw)} into Go value of type client.Job")
    job: dict[str, Any] = {}
    for field in FIELD_ORDER:
        value = raw.get(field)
        if value is None:
            continue
        expected, go_type = _FIELD_TYPES[field]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise JobError(
                f"invalid JSON: json: cannot unmarshal {_json_kind(value)} into Go struct field "
                f"Job.{field} of type {go_type}"
            )
        job[field] = value
    return job


def prepare_push(job: dict[str, Any], now: float) -> tuple[dict[str, Any], float | None]:
    """Validate a decoded job for PUSH and fill defaults.

    Returns the job to store and the unix time it is scheduled for (None: enqueue now,
    and the job already carries its `enqueued_at`).
    The order of checks follows Faktory so the first error reported is the same.
    """
    jid = job.get("jid", "")
    if len(jid) < 8:
        raise JobError("jobs must have a reasonable jid parameter")
    if not job.get("jobtype"):
        raise JobError("jobs must have a jobtype parameter")
    if "args" not in job:
        raise JobError("jobs must have an args parameter")
    if job.get("reserve_for", 0) > MAX_RESERVE_FOR:
        raise JobError("jobs cannot be reserved for more than one day")
    job = dict(job)
    job.setdefault("retry", DEFAULT_RETRY)
    stamp = format_time(now)
    if not job.get("created_at"):
        job["created_at"] = stamp
    if not job.get("queue"):
        job["queue"] = "default"
    at = job.get("at")
    scheduled_for = None
    if at:
        try:
            when = parse_time(at)
        except ValueError as exc:
            raise JobError(f"invalid timestamp for 'at': {json.dumps(at)}: {exc}") from None
        if when > now:
            scheduled_for = when
    if scheduled_for is None:
        job["enqueued_at"] = stamp
    else:
        job.pop("enqueued_at", None)
    check_queue_name(job["queue"])
    return canonical(job), scheduled_for


def check_queue_name(name: str) -> None:
    """Faktory refuses to create a queue whose name is not `[a-zA-Z0-9._-]+`."""
    if not QUEUE_NAME.fullmatch(name):
        raise JobError(
            f'cannot get "{name}" queue: queue names must match \\A[a-zA-Z0-9._-]+\\z'
        )


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


def reservation_seconds(job: dict[str, Any]) -> int:
    """How long a fetched job is reserved: `reserve_for` clamped to [60, 86400], 0 ⇒ 1800."""
    value = job.get("reserve_for", 0)
    if value <= 0:
        return DEFAULT_RESERVE_FOR if value == 0 else MIN_RESERVE_FOR
    return max(MIN_RESERVE_FOR, min(MAX_RESERVE_FOR, value))
