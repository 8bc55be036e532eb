"""Redis glob semantics for MUTATE's ``regexp`` filter (spec §3.10)."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faktory_py.util.glob import compile_glob


def redis_match(pattern: str, string: str) -> bool:
    """A direct, backtracking reading of Redis ``stringmatchlen``, as an oracle."""

    @cache
    def match(p: int, s: int) -> bool:
        while p < len(pattern):
            ch = pattern[p]
            if ch == "*":
                while p < len(pattern) and pattern[p] == "*":
                    p += 1
                return any(match(p, k) for k in range(s, len(string) + 1))
            if s == len(string):
                return False
            if ch == "?":
                pass
            elif ch == "[":
                p += 1
                negate = p < len(pattern) and pattern[p] == "^"
                if negate:
                    p += 1
                hit = False
                while p < len(pattern):
                    if pattern[p] == "\\" and len(pattern) - p >= 2:
                        p += 1
                        hit |= pattern[p] == string[s]
                    elif pattern[p] == "]":
                        break
                    elif len(pattern) - p >= 3 and pattern[p + 1] == "-":
                        low, high = sorted((pattern[p], pattern[p + 2]))
                        hit |= low <= string[s] <= high
                        p += 2
                    else:
                        hit |= pattern[p] == string[s]
                    p += 1
                if hit == negate:
                    return False
            else:
                if ch == "\\" and len(pattern) - p >= 2:
                    p += 1
                if pattern[p] != string[s]:
                    return False
            p += 1
            s += 1
        return s == len(string)

    return match(0, 0)


def matches(pattern: str, string: str) -> bool:
    return compile_glob(pattern).fullmatch(string) is not None


def test_brief_examples() -> None:
    assert matches("*uid:67123*", '{"args":["uid:67123"]}')
    assert matches(r"*\"args\":\[\"fizz\"\]*", '{"args":["fizz"]}')
    assert not matches(r"*\"args\":\[\"fizz\"\]*", '{"args":["buzz"]}')
    assert matches("a?c", "abc")
    assert not matches("a?c", "ac")


def test_faktory_jobtype_filter_shape() -> None:
    payload = '{"retry":25,"jid":"123456789abc","queue":"default","jobtype":"Email","args":[1]}'
    assert matches('*"jobtype":"Email"*', payload)
    assert not matches('*"jobtype":"Emai"*', payload)


@pytest.mark.parametrize(
    ("pattern", "string", "expected"),
    [
        ("", "", True),
        ("", "a", False),
        ("abc", "abc", True),
        ("abc", "abcd", False),
        ("abc", "xabc", False),
        ("*", "", True),
        ("*", "anything at all", True),
        ("**", "x", True),
        ("a*", "a", True),
        ("a*b", "a\nb", True),
        ("?", "\n", True),
        ("*a*", "bab", True),
        ("*a*", "bbb", False),
        ("h[ae]llo", "hello", True),
        ("h[ae]llo", "hillo", False),
        ("h[^e]llo", "hallo", True),
        ("h[^e]llo", "hello", False),
        ("h[a-b]llo", "hbllo", True),
        ("h[a-b]llo", "hcllo", False),
        ("[z-a]", "m", True),  # reversed ranges are swapped
        ("[]", "]", False),  # an empty class matches nothing
        ("[]a]", "]a]", False),
        ("[^]", "x", True),  # an empty negated class matches any one character
        ("[^]", "", False),
        ("[ab", "b", True),  # an unclosed class runs to the end of the pattern
        ("[ab", "[", False),
        ("[", "[", False),
        ("[^", "q", True),
        (r"[\]]", "]", True),
        (r"[\^a]", "^", True),
        (r"[a\-z]", "-", True),
        (r"[a\-z]", "m", False),
        ("[a-]", "]", True),  # "-]" ends a range at "]", leaving the class unclosed
        ("[a-]", "-", False),
        (r"\*", "*", True),
        (r"\*", "x", False),
        (r"\?", "?", True),
        (r"\[a]", "[a]", True),
        ("a\\", "a\\", True),  # a trailing backslash is literal
        (r"\\", "\\", True),
        (".*", "ab", False),  # regex syntax is literal
        (".*", ".xyz", True),
        ("(a|b)", "(a|b)", True),
        ("$^+{1}", "$^+{1}", True),
        ("é*😀", "éé😀", True),
        ("[α-ω]", "λ", True),
    ],
)
def test_redis_semantics(pattern: str, string: str, expected: bool) -> None:
    assert redis_match(pattern, string) is expected
    assert matches(pattern, string) is expected


def test_whole_string_must_match_with_any_regex_method() -> None:
    compiled = compile_glob("b*")
    assert compiled.fullmatch("bcd")
    assert compiled.match("bcd")
    assert compiled.search("abc") is None
    assert compile_glob("a").match("ab") is None


def test_many_stars_against_a_long_near_miss_is_fast() -> None:
    # A naive ".*a.*a…" translation would backtrack for astronomically long here.
    compiled = compile_glob("*a" * 40 + "*b")
    assert compiled.fullmatch("a" * 20_000) is None
    assert compiled.fullmatch("a" * 20_000 + "b")


patterns = st.text(alphabet="ab*?[]^-\\", max_size=10)
strings = st.text(alphabet="ab-^]\\[*", max_size=8)


@settings(max_examples=2000)
@given(patterns, strings)
def test_agrees_with_redis_reading(pattern: str, string: str) -> None:
    assert matches(pattern, string) is redis_match(pattern, string)


@given(strings)
def test_escaped_text_matches_only_itself(text: str) -> None:
    escaped = "".join("\\" + ch for ch in text)
    assert matches(escaped, text)
    assert not matches(escaped, text + "a")
