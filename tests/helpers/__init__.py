"""What the tests share: the RESP client wrappers (`rawclient`, `async_client`), polling for a
server-side condition (`polling`), server processes and the real Faktory (`servers`,
`serving`, `real_faktory`, `toolchain`), a server in the test's own trio run over in-memory streams
(`inprocess`), job payloads and PUSH lines (`jobs`), reading `/metrics` (`metrics`), and the
property tests' generators and replay checks (`json_fuzz`, `model_replay`, `scan_guard`).

Imported as `helpers.<module>`: tests/conftest.py puts tests/ on `sys.path` (pytest's
rootdir-style imports), so every folder of the suite reaches it the same way."""

from pathlib import Path

#: the repository's root directory
ROOT = Path(__file__).resolve().parents[2]
