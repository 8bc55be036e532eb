"""Faktory's command port, defined once.

Here, in the lowest layer, because two sides need it that may not import each other: the
server's configuration (a binding without a port gets it) and the tools that talk to a
server from outside (a URL without a port gets it); tools may import only `wire` and `util`,
and `config` sits below `wire`.
"""

#: the port Faktory and its clients use when none is given (protocol/spec.md §1)
DEFAULT_PORT = 7419
