"""The Faktory wire protocol without I/O (protocol/spec.md §1-§2).

`framing` splits the byte stream into `Command`s, `replies` builds RESP2 replies,
`handshake` checks the greeting and HELLO, and `connection` is one connection's life
(greeting, HELLO, commands, reply batching) as a state machine over them. The names of `framing` and `replies` are
re-exported here, so callers write `wire.LineReader`, `wire.error(...)`, `wire.OK`.
"""

from .framing import Command, LineReader, ProtocolError
from .replies import NULL, OK, bulk, bulk_json, error, simple

__all__ = ["NULL", "OK", "Command", "LineReader", "ProtocolError",
           "bulk", "bulk_json", "error", "simple"]
