"""Leaves: JSON encoding (`jsoncodec`), Faktory's time formats (`timefmt`), Redis-style glob
patterns (`glob`). They import nothing else of faktory_py."""
