"""`jsoncodec.decode`'s depth limit (MAX_DEPTH) holds whatever the text's length: a short text
goes to orjson first (a valid document nests at most half its length deep), and what orjson
refuses, or a longer text, is checked for depth as before."""

from __future__ import annotations

import pytest

from faktory_py.util.jsoncodec import MAX_DEPTH, InvalidJSON, decode


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_the_depth_limit_holds_for_short_and_long_texts() -> None:
    deepest = decode(nested(MAX_DEPTH))  # the longest text that can be this deep, and short
    for _ in range(MAX_DEPTH - 1):
        (deepest,) = deepest
    assert deepest == []
    padded = '{"pad":"' + "x" * 300 + '","a":' + nested(MAX_DEPTH - 1) + "}"  # long, as deep
    assert decode(padded)["pad"] == "x" * 300
    for text in (nested(MAX_DEPTH + 1), "[" * (MAX_DEPTH + 1), padded.replace(nested(MAX_DEPTH - 1), nested(MAX_DEPTH))):
        with pytest.raises(InvalidJSON, match=f"^nesting depth {MAX_DEPTH + 1} exceeds the limit of {MAX_DEPTH}$"):
            decode(text)
    with pytest.raises(InvalidJSON):  # short, refused by orjson and by the standard library
        decode('{"jid":')
