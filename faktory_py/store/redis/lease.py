"""The primary's lease, as a state machine with an explicit `now` (protocol/spec.md §7.1).

Redis keeps the lease key for `ttl` after it *receives* an ACQUIRE or RENEW; the primary
cannot know when that was, only that it was after it *sent* the call. So a granted call
sent at `sent_at` makes the lease valid locally until `sent_at + ttl − margin`: as long as
the primary's clock does not run slower than Redis's by more than margin/ttl, its local
deadline passes before the key expires in Redis, and no other node can hold the lease while
this one still thinks it does. Monotonic time keeps running while a process is stopped, so a
primary resumed after SIGSTOP sees its deadline passed before it does anything.

A renewal that fails (timeout, connection error) changes nothing here: the deadline alone
decides, and renewals are retried every `retry` seconds until it passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: how soon a failed renewal is tried again (at most `renew_every`)
RETRY = 0.2


def margin(ttl: float) -> float:
    """δ: max(ttl/10, min(0.5 s, ttl/4)) — covers clock-rate drift and scheduling delay."""
    return max(ttl / 10, min(0.5, ttl / 4))


@dataclass
class Lease:
    """One holder's view of its lease; times are seconds on a monotonic clock."""

    ttl: float
    renew_every: float
    token: bytes = b""
    epoch: int = 0
    deadline: float = float("-inf")
    #: when the next RENEW is due
    renew_at: float = float("inf")
    lost: bool = field(default=False)

    def granted(self, token: bytes, epoch: int, sent_at: float) -> None:
        """ACQUIRE, sent at `sent_at`, returned OK."""
        self.token, self.epoch, self.lost = token, epoch, False
        self.renewed(sent_at)

    def renewed(self, sent_at: float) -> None:
        """RENEW, sent at `sent_at`, returned 1."""
        self.deadline = max(self.deadline, sent_at + self.ttl - margin(self.ttl))
        self.renew_at = sent_at + self.renew_every

    def renew_failed(self, now: float) -> None:
        """RENEW could not be sent or answered: try again soon; the deadline still holds."""
        self.renew_at = now + min(RETRY, self.renew_every)

    def refused(self) -> None:
        """RENEW returned 0 or an append was fenced: the key holds another token (or none)."""
        self.lost = True
        self.deadline = float("-inf")

    def valid(self, now: float) -> bool:
        """Whether this node may still acknowledge anything."""
        return not self.lost and now < self.deadline

    def wake_at(self) -> float:
        """When the renewer must act next: a renewal, or noticing the deadline."""
        return min(self.renew_at, self.deadline)
