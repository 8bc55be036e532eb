"""faktory_py: a Faktory-compatible job server on trio with a durable embedded store."""

__version__ = "0.1.0"

#: The Faktory release whose protocol we speak; clients parse it as semver (Rust wants
#: major 1, minor >= 8), so INFO reports this rather than our own version.
FAKTORY_VERSION = "1.9.4"
