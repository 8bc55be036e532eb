"""admission.py: the three socket budgets (handshakes, identified connections, descriptors)."""

from __future__ import annotations

from faktory_py.server.admission import Admission


class Socket:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


def arrive(admission: Admission, name: str) -> tuple[Socket, bool]:
    sock = Socket(name)
    return sock, admission.arrive(sock, sock.close)


def test_over_the_handshake_budget_the_oldest_handshake_is_closed() -> None:
    admission = Admission(max_connections=10, max_handshakes=2, max_sockets=100)
    (a, ok_a), (b, ok_b), (c, ok_c) = (arrive(admission, n) for n in "abc")
    assert (ok_a, ok_b, ok_c) == (True, True, True)
    assert (a.closed, b.closed, c.closed) == (True, False, False)
    assert admission.handshaking == 2 and admission.evicted == 1
    assert not admission.identify(a)  # it was closed: it never counts
    assert admission.identify(b) and admission.identify(c)
    assert (admission.handshaking, admission.identified) == (0, 2)


def test_handshakes_do_not_count_toward_max_connections() -> None:
    admission = Admission(max_connections=2, max_handshakes=100, max_sockets=100)
    silent = [arrive(admission, f"s{i}")[0] for i in range(50)]
    real = [arrive(admission, f"r{i}")[0] for i in range(3)]
    assert [admission.identify(s) for s in real] == [True, True, False]
    assert not any(s.closed for s in silent)
    admission.leave(real[0])
    again, _ = arrive(admission, "again")
    assert admission.identify(again)


def test_at_the_descriptor_budget_a_handshake_makes_room_else_the_newcomer_is_refused() -> None:
    admission = Admission(max_connections=10, max_handshakes=10, max_sockets=3)
    first, second = arrive(admission, "1")[0], arrive(admission, "2")[0]
    assert admission.identify(first) and admission.identify(second)
    waiting, _ = arrive(admission, "3")
    newcomer, ok = arrive(admission, "4")
    assert ok and waiting.closed and not newcomer.closed
    assert admission.identify(newcomer)
    refused, ok = arrive(admission, "5")
    assert not ok and not refused.closed  # the caller refuses it; nobody else is closed
    admission.leave(first)
    assert arrive(admission, "6")[1]
