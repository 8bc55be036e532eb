"""The one error type a client causes.

`ClientError(message, code)` is answered `-CODE message`: the request was wrong, the text is
Faktory's own wording (protocol/spec.md §3). Anything else raised while answering is our bug.
"""

from __future__ import annotations


class ClientError(Exception):
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
