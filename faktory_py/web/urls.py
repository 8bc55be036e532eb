"""How the UI names a queue or a set entry in its links, forms and redirects: in the query string.

A jid may hold any character (`/`, `?`, `#`, `%`, spaces, line breaks) and a queue may be
named `.` or `..` (`[a-zA-Z0-9._-]+`); as path segments browsers resolve the dots away (also
when percent-encoded) and servers decode `%2F` into a separator, so no path can reach them.
A query parameter arrives as written: `/queues?name=..`, `/retries?key=<time>|<jid>`.

Form values (a listing's checkboxes) have one more hazard: the browser rewrites every line
break in them to CRLF and the HTML parser turns NUL into U+FFFD. The page therefore writes
`%`, CR, LF and NUL in a form value as `%XX` (`form_value`), and the app reads it back
(`from_form`); every other character, and so every ordinary key, is sent as it is.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlencode

_FORM_UNSAFE = re.compile("[%\r\n\0]")


def url(root: str, path: str, **params: object) -> str:
    """`root + path`, with the parameters that are not None as a percent-encoded query."""
    query = urlencode({k: v for k, v in params.items() if v is not None}, quote_via=quote)
    return f"{root}{path}?{query}" if query else root + path


def form_value(text: str) -> str:
    """`text` as a form value that survives the browser unchanged (see the module docstring)."""
    return _FORM_UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", text)


def from_form(value: str) -> str:
    """The text a `form_value` stands for (a value without `%` is itself)."""
    return unquote(value)
