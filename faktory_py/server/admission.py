"""Which sockets the command port keeps: three budgets, so no kind of socket can crowd out another.

- Sockets still in their handshake (accepted, no HELLO `OK` yet) have a budget of their
  own, `max_handshakes`. When a new one arrives over it, the *oldest* is closed: a real
  client says HELLO within a round trip of the greeting, so it is always among the newest,
  while silent sockets (a scanner, a flood of half-open connections) age and go first.
  There is no per-address rule: on loopback or behind a NAT every peer shares one address.
- Identified connections have `max_connections`; a socket still in its handshake does not
  count toward it.
- All sockets together have `max_sockets` (fdlimit.py `socket_budget`): at that limit a new
  socket closes the oldest handshaking one, or, if every socket is identified, is refused.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable


class Admission:
    def __init__(self, max_connections: int, max_handshakes: int, max_sockets: int) -> None:
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self.max_sockets = max_sockets
        #: sockets in their handshake, oldest first → how to close each
        self._handshaking: OrderedDict[Hashable, Callable[[], None]] = OrderedDict()
        self._identified: set[Hashable] = set()
        #: sockets closed to make room for newer ones since the start
        self.evicted = 0

    @property
    def handshaking(self) -> int:
        return len(self._handshaking)

    @property
    def identified(self) -> int:
        return len(self._identified)

    def arrive(self, key: Hashable, close: Callable[[], None]) -> bool:
        """A socket was accepted: True ⇒ keep it (its handshake may begin), False ⇒ refuse it.

        May call `close` of the oldest socket still in its handshake to make room.
        """
        full = len(self._handshaking) + len(self._identified) >= self.max_sockets
        if full and not self._handshaking:
            return False
        if full or len(self._handshaking) >= self.max_handshakes:
            _, evict = self._handshaking.popitem(last=False)
            self.evicted += 1
            evict()
        self._handshaking[key] = close
        return True

    def identify(self, key: Hashable) -> bool:
        """Its HELLO was accepted: True ⇒ it counts as identified, False ⇒ over `max_connections`
        (it then counts as nothing; close it). False too if it was closed to make room meanwhile."""
        if self._handshaking.pop(key, None) is None or len(self._identified) >= self.max_connections:
            return False
        self._identified.add(key)
        return True

    def leave(self, key: Hashable) -> None:
        """The socket is closed (whatever state it was in)."""
        self._handshaking.pop(key, None)
        self._identified.discard(key)
