"""The errors faktory_py raises on purpose, under one root.

`FaktoryPyError` is every error we expect and word ourselves: a request the client got
wrong (`ClientError`), a configuration the server refuses (`ConfigError`), a peer that
breaks the protocol, a journal that cannot be read or written (their classes live with
the code that detects them and derive from the root).

`ClientError(message, code)` is answered `-CODE message`: the request was wrong, the text
is Faktory's own wording (protocol/spec.md §3). Its subclasses name the conditions callers
tell apart. Anything else raised while answering a command is our bug: commands/dispatch.py
logs it with its traceback and answers `-ERR internal error`, and the connection goes on.
"""

from __future__ import annotations


class FaktoryPyError(Exception):
    """The root of every error faktory_py raises on purpose."""


class ConfigError(FaktoryPyError):
    """A configuration the server refuses to start with (message says why)."""


class ClientError(FaktoryPyError):
    """A request (a job, a command's argument) the client got wrong.

    `code` is the RESP error code; `str(e)` the message after it, exactly as Faktory words it.
    """

    def __init__(self, message: str, code: str = "ERR") -> None:
        super().__init__(message)
        self.code = code

    @property
    def line(self) -> str:
        """The text a PUSHB result map carries for this error (code included unless ERR)."""
        return str(self) if self.code == "ERR" else f"{self.code} {self}"


class NotUnique(ClientError):
    """A unique job pushed while another job holds its lock (protocol/spec.md §9.1)."""

    def __init__(self) -> None:
        super().__init__("Job not unique", "NOTUNIQUE")


class NoSuchJob(ClientError):
    """FAIL of a jid no worker has reserved (protocol/spec.md §3, FAIL)."""

    def __init__(self, jid: str) -> None:
        super().__init__(f"Job not found {jid}")
        self.jid = jid


class NoSuchBatch(ClientError):
    """A bid that names no live batch (protocol/spec.md §10.1)."""

    def __init__(self, bid: str) -> None:
        super().__init__(f"No such batch {bid}")
        self.bid = bid
