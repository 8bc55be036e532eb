"""Greeting and HELLO verification (protocol/spec.md §2, protocol/clients.md §2)."""

from __future__ import annotations

import json
import random
import re

import pytest

from faktory_py.wire.handshake import Handshake, HandshakeFailed, Hello, hash_password

GREETING = re.compile(rb'\+HI \{"v":2,"i":(\d+),"s":"([0-9a-f]+)"\}\r\n')
INVALID_PASSWORD = b"-ERR Invalid password\r\n"


class FixedRandom(random.Random):
    """Makes the greeting carry the iteration count and salt of a known test vector."""

    def __init__(self, iterations: int, salt: str) -> None:
        super().__init__()
        self.iterations, self.salt = iterations, salt

    def randint(self, a: int, b: int) -> int:
        return self.iterations

    def getrandbits(self, k: int) -> int:
        return int(self.salt, 16)


def greeted(password: str, rng: random.Random | None = None) -> tuple[Handshake, int, str]:
    handshake = Handshake(password, rng)
    match = GREETING.fullmatch(handshake.greeting)
    assert match, handshake.greeting
    return handshake, int(match[1]), match[2].decode()


def hello(**fields: object) -> bytes:
    return b"HELLO " + json.dumps(fields, separators=(",", ":")).encode()


def fails_silently(handshake: Handshake, line: bytes) -> None:
    with pytest.raises(HandshakeFailed) as failed:
        handshake.receive_hello(line)
    assert failed.value.reply is None


def fails_with_invalid_password(handshake: Handshake, line: bytes) -> None:
    with pytest.raises(HandshakeFailed) as failed:
        handshake.receive_hello(line)
    assert failed.value.reply == INVALID_PASSWORD


# -- hashing ---------------------------------------------------------------------------------


def test_hash_password_vectors() -> None:
    assert (
        hash_password("foobar", "55104dc76695721d", 1545)
        == "6d877f8e5544b1f2598768f817413ab8a357afffa924dedae99eb91472d4ec30"
    )
    assert (
        hash_password("abcde123", "123", 3)
        == "ef646abadf4ffba660d9bbb8de8e45576970de917b4c9da8cad96b49e64636d9"
    )


def test_hash_password_rounds_below_one_mean_one() -> None:
    one = hash_password("pw", "salt", 1)
    assert hash_password("pw", "salt", 0) == one
    assert hash_password("pw", "salt", -5) == one
    assert hash_password("pw", "salt", 2) != one


# -- greeting --------------------------------------------------------------------------------


def test_greeting_without_password() -> None:
    assert Handshake(None).greeting == b'+HI {"v":2}\r\n'
    assert Handshake("").greeting == b'+HI {"v":2}\r\n'


def test_greeting_with_password_has_iterations_and_salt_in_range() -> None:
    rng = random.Random(7)
    seen_iterations = set()
    for _ in range(500):
        _, iterations, salt = greeted("secret", rng)
        assert 4000 <= iterations <= 8095
        assert len(salt) <= 16 and (salt == "0" or not salt.startswith("0"))
        assert 0 <= int(salt, 16) < 2**63
        seen_iterations.add(iterations)
    assert min(seen_iterations) < 4200 and max(seen_iterations) > 7900


def test_every_connection_gets_a_fresh_salt() -> None:
    salts = {greeted("secret")[2] for _ in range(50)}
    assert len(salts) == 50


# -- passwords -------------------------------------------------------------------------------


def test_known_vector_authenticates_with_protocol_2() -> None:
    handshake = Handshake("foobar", FixedRandom(1545, "55104dc76695721d"))
    assert handshake.greeting == b'+HI {"v":2,"i":1545,"s":"55104dc76695721d"}\r\n'
    pwdhash = "6d877f8e5544b1f2598768f817413ab8a357afffa924dedae99eb91472d4ec30"
    assert handshake.receive_hello(hello(v=2, pwdhash=pwdhash)).pwdhash == pwdhash


def test_second_vector_authenticates() -> None:
    handshake = Handshake("abcde123", FixedRandom(3, "123"))
    pwdhash = "ef646abadf4ffba660d9bbb8de8e45576970de917b4c9da8cad96b49e64636d9"
    handshake.receive_hello(hello(v=2, pwdhash=pwdhash))


@pytest.mark.parametrize("version", [None, 0, 1, "absent"])
def test_protocol_below_2_uses_one_round(version: object) -> None:
    handshake, iterations, salt = greeted("secret")
    fields = {} if version == "absent" else {"v": version}
    handshake.receive_hello(hello(**fields, pwdhash=hash_password("secret", salt, 1)))
    fails_with_invalid_password(
        handshake, hello(**fields, pwdhash=hash_password("secret", salt, iterations))
    )


@pytest.mark.parametrize("version", [2, 3, 255])
def test_protocol_2_and_later_use_the_greeting_rounds(version: int) -> None:
    handshake, iterations, salt = greeted("secret")
    handshake.receive_hello(hello(v=version, pwdhash=hash_password("secret", salt, iterations)))
    fails_with_invalid_password(handshake, hello(v=version, pwdhash=hash_password("secret", salt, 1)))


@pytest.mark.parametrize(
    "fields",
    [
        {"v": 2},
        {"v": 2, "pwdhash": None},
        {"v": 2, "pwdhash": ""},
        {"v": 2, "pwdhash": "0" * 64},
        {"v": 2, "pwdhash": "é" * 64},
        {"v": 2, "pwdhash": "\ud800"},
    ],
)
def test_missing_or_wrong_pwdhash(fields: dict[str, object]) -> None:
    handshake, _, _ = greeted("secret")
    fails_with_invalid_password(handshake, hello(**fields))


def test_upper_case_hex_is_rejected() -> None:
    handshake, iterations, salt = greeted("secret")
    good = hash_password("secret", salt, iterations)
    fails_with_invalid_password(handshake, hello(v=2, pwdhash=good.upper()))


def test_wrong_password_or_salt() -> None:
    handshake, iterations, salt = greeted("secret")
    for password, salted in (("Secret", salt), ("secret", salt + "0")):
        pwdhash = hash_password(password, salted, iterations)
        fails_with_invalid_password(handshake, hello(v=2, pwdhash=pwdhash))


def test_without_password_pwdhash_is_ignored() -> None:
    for password in (None, ""):
        assert Handshake(password).receive_hello(hello(v=2, pwdhash="anything")).pwdhash == "anything"
        Handshake(password).receive_hello(hello(v=2))


def test_cdrx_style_hello_with_spaces_and_no_version_authenticates() -> None:
    handshake, _, salt = greeted("s3cret")
    pwdhash = hash_password("s3cret", salt, 1)
    line = (
        'HELLO {"hostname": "box1", "pid": 4242, "labels": ["python"], '
        f'"wid": "4qpc2443vpvai", "pwdhash": "{pwdhash}"}}'
    ).encode()
    got = handshake.receive_hello(line)
    assert got == Hello(
        wid="4qpc2443vpvai", hostname="box1", pid=4242, labels=("python",), v=0, pwdhash=pwdhash
    )
    assert got.is_worker


# -- shape and types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"HELLO{}", b"hello {}", b"PUSH {}", b"", b"HELLO", b"HELLO ", b" HELLO {}", b"HELLO  {}", b"HELLO\t{}"],
)
def test_bad_preamble_closes_without_reply(line: bytes) -> None:
    fails_silently(Handshake(None), line)
    fails_silently(Handshake("secret"), line)


@pytest.mark.parametrize(
    "line",
    [
        b"HELLO {",
        b'HELLO {"v":2',
        b'HELLO {"v":2} {}',
        b'HELLO {"v":2}x',
        b"HELLO {'v':2}",
        b'HELLO {"pid":NaN}',
        b'HELLO {"rss_kb":Infinity}',
        b'HELLO {"x":' + b"[" * 100_000,
    ],
)
def test_undecodable_json_closes_without_reply(line: bytes) -> None:
    fails_silently(Handshake(None), line)
    fails_silently(Handshake("secret"), line)


@pytest.mark.parametrize(
    "fields",
    [
        '"pid":"12"',
        '"pid":1.5',
        '"pid":1e3',
        '"pid":true',
        f'"pid":{2**63}',
        '"v":300',
        '"v":256',
        '"v":-1',
        '"v":2.0',
        '"v":true',
        '"v":"2"',
        '"rss_kb":"1"',
        '"rss_kb":false',
        '"labels":"python"',
        '"labels":{}',
        '"labels":[1]',
        '"labels":[["a"]]',
        '"wid":5',
        '"wid":false',
        '"hostname":[]',
        '"pwdhash":123',
        '"username":{}',
    ],
)
def test_type_mismatch_closes_without_reply(fields: str) -> None:
    line = b"HELLO {" + fields.encode() + b"}"
    fails_silently(Handshake(None), line)
    # The type check comes before the password check, as in Go.
    fails_silently(Handshake("secret"), line)


def test_empty_hello_is_a_producer() -> None:
    got = Handshake(None).receive_hello(b"HELLO {}")
    assert got == Hello()
    assert got == Hello(wid="", hostname="", pid=0, labels=(), v=0, pwdhash="", username="", rss_kb=0)
    assert not got.is_worker


@pytest.mark.parametrize("wid", ['""', "null"])
def test_empty_or_null_wid_is_a_producer(wid: str) -> None:
    got = Handshake(None).receive_hello(b'HELLO {"v":2,"wid":' + wid.encode() + b"}")
    assert got.wid == ""
    assert not got.is_worker


def test_nulls_take_defaults() -> None:
    line = (
        b'HELLO {"v":null,"wid":null,"hostname":null,"pid":null,"labels":null,'
        b'"pwdhash":null,"username":null,"rss_kb":null}'
    )
    assert Handshake(None).receive_hello(line) == Hello()


def test_full_worker_hello() -> None:
    line = hello(
        hostname="box1",
        wid="4qpc2443vpvai",
        pid=2676,
        labels=["golang", "blue"],
        v=2,
        username="me",
        rss_kb=54176,
        priority=5,
        extra={"nested": [1, None]},
    )
    got = Handshake(None).receive_hello(line)
    assert got == Hello(
        wid="4qpc2443vpvai",
        hostname="box1",
        pid=2676,
        labels=("golang", "blue"),
        v=2,
        username="me",
        rss_kb=54176,
    )
    assert got.is_worker


def test_integer_limits() -> None:
    got = Handshake(None).receive_hello(hello(v=255, pid=2**63 - 1, rss_kb=-(2**63)))
    assert (got.v, got.pid, got.rss_kb) == (255, 2**63 - 1, -(2**63))


def test_strings_are_sanitised_like_go() -> None:
    # Invalid UTF-8 and lone surrogates become U+FFFD; a null label stays an empty string.
    line = b'HELLO {"hostname":"b\xffx","wid":"w\\ud800","labels":["a",null,"\\u00e9"]}'
    got = Handshake(None).receive_hello(line)
    assert got.hostname == "b\ufffdx"
    assert got.wid == "w\ufffd"
    assert got.labels == ("a", "", "é")


def test_failure_carries_a_reason_for_logs() -> None:
    with pytest.raises(HandshakeFailed, match="HELLO"):
        Handshake(None).receive_hello(b"PUSH {}")
