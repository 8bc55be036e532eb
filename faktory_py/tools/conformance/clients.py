"""What the Faktory client libraries need from a reply (protocol/clients.md), for `ACCEPTS`.

A case file that replays one client's requests (`client-<name>.case`) says `ACCEPTS <name>`;
the runner then checks every reply against `framing_problem` (what every client needs) and
that client's acceptor, and `S$ info` matches INFO against `INFO`, the union of the fields
some client reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: INFO, per protocol/clients.md §6: the union of what the clients read, with the types they need.
INFO: dict[str, Any] = {
    "now": "<rfc3339>",
    "server_utc_time": "<hms-utc>",
    "faktory": {
        "total_failures": "<int>", "total_processed": "<int>", "total_enqueued": "<int>",
        "total_queues": "<int>",
        "queues": "<ints>",
        "sets": {"scheduled": "<int>", "retries": "<int>", "dead": "<int>", "working": "<int>"},
        "tasks": {
            "Busy": {"size": "<int>", "reaped": "<int>"},
            "Workers": {"size": "<int>", "reaped": "<int>"},
            "Scheduled": {"size": "<int>"},
            "Retries": {"size": "<int>"},
            "Dead": {"size": "<int>"},
        },
    },
    "server": {
        "description": "<string>", "faktory_version": "<semver>", "uptime": "<int>",
        "connections": "<int>", "command_count": "<int>", "used_memory_mb": "<int>",
    },
}


def framing_problem(reply: bytes) -> str | None:
    """What every client needs (protocol/clients.md §1, §4): a known type byte, CRLF lines,
    no `$0`, and only the error codes ERR and NOTUNIQUE."""
    if reply[:1] not in (b"+", b"-", b"$"):
        return "reply type byte is not +, - or $"
    head, sep, _ = reply.partition(b"\r\n")
    if not sep or b"\n" in head or b"\r" in head:
        return "reply line does not end in \\r\\n (or has a bare CR/LF inside)"
    if head == b"$0":
        return "$0 (clients need $-1 for nothing)"
    if reply.startswith(b"-"):
        code = head[1:].split(b" ", 1)[0]
        if code not in (b"ERR", b"NOTUNIQUE"):
            return f"error code {code!r}: clients only know ERR and NOTUNIQUE"
    return None


def _bulk_body(reply: bytes) -> bytes | None:
    """The payload of a bulk reply (None for `$-1` or a non-bulk)."""
    if not reply.startswith(b"$"):
        return None
    head, _, rest = reply.partition(b"\r\n")
    return None if int(head[1:]) < 0 else rest[:-2]


def accepts_elixir(reply: bytes) -> str | None:
    """Elixir decodes replies by exact prefixes; anything else is a FunctionClauseError."""
    if reply in (b"+OK\r\n", b"$-1\r\n") or reply.startswith((b"-ERR ", b"-SHUTDOWN ", b"-NOTUNIQUE ", b"+{")):
        return None
    body = _bulk_body(reply)
    if body is not None and body.startswith((b"{", b"b-")):
        return None
    return "Elixir only takes +OK\\r\\n, -ERR /-SHUTDOWN /-NOTUNIQUE , $-1, or a bulk body starting { or b-"


def _type_byte(client: str) -> Callable[[bytes], str | None]:
    """Ruby (anything else is a ParseError), .NET, PHP (fgets: a line, or a bulk header then
    the body) and Haskell read `+`, `-` and `$` replies only."""
    def accepts(reply: bytes) -> str | None:
        return None if reply[:1] in (b"+", b"-", b"$") else f"{client} cannot read this reply type"
    return accepts


ACCEPTORS: dict[str, Callable[[bytes], str | None]] = {
    "ruby": _type_byte("Ruby"), "elixir": accepts_elixir, "dotnet": _type_byte(".NET"),
    "php": _type_byte("PHP"), "haskell": _type_byte("Haskell"),
}

#: Clients that need every reply to arrive in one read (the .NET client reads 8 KB chunks and
#: re-reads from scratch on a partial job; protocol/clients.md §1). Checked against faktory_py
#: only (`ours`), which writes every reply with one send: Faktory 1.9.4 writes a reply in
#: pieces (`+` / `HI {...}` / `\r\n`, or `$n\r\n` / body / `\r\n`), so whether they reach the
#: client in one read there is a matter of timing.
ONE_READ = {"dotnet"}


def problem(reply: bytes, clients: tuple[str, ...]) -> str | None:
    """Why one of `clients` could not take `reply` (None if all can). The greeting is only
    checked for framing: each client reads it with its own handshake code."""
    found = framing_problem(reply)
    if reply.startswith(b"+HI "):
        return found
    for client in clients:
        found = found or ACCEPTORS[client](reply)
    return found
