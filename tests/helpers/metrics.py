"""Reading `/metrics` in tests: a scrape over HTTP, its samples by name and labels, and
`promtool check metrics` (Debian's `prometheus` package, installed by tests/run.sh)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Scrape:
    status: int
    content_type: str
    text: str

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """(sample name, its labels) → value, parsed by prometheus-client's own parser."""
        return {(sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(self.text) for sample in family.samples}

    def value(self, name: str, **labels: str) -> float:
        """The one sample `name` with exactly `labels`; KeyError if there is none."""
        return self.samples()[(name, frozenset(labels.items()))]


def scrape(url: str, password: str | None = None) -> Scrape:
    """GET `url` (blocking: call it from a thread in a trio test), with Basic auth if a password is given."""
    request = urllib.request.Request(url)
    if password is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"x:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Scrape(response.status, response.headers.get("Content-Type", ""), response.read().decode())
    except urllib.error.HTTPError as exc:
        return Scrape(exc.code, exc.headers.get("Content-Type", ""), exc.read().decode())


def promtool() -> str:
    """promtool's path; the test is skipped without it (tests/run.sh installs it; under CI a failed
    install fails the run before any test)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian's prometheus package; tests/run.sh installs it)")
    return path


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on an exposition (it parses it and lints names, units and help)."""
    return subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True,
                          timeout=60)
