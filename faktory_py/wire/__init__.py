"""The Faktory wire protocol without I/O (protocol/spec.md §1-§2).

`framing` splits the byte stream into `Command`s, `replies` builds RESP2 replies, and
`handshake` runs the greeting and HELLO. The names of `framing` and `replies` are
re-exported here, so callers write `wire.LineReader`, `wire.error(...)`, `wire.OK`.
"""

from .framing import Command, LineReader, ProtocolError
from .replies import NULL, OK, bulk, bulk_json, error, simple

__all__ = ["NULL", "OK", "Command", "LineReader", "ProtocolError",
           "bulk", "bulk_json", "error", "simple"]
