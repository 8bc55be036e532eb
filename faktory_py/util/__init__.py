"""Leaves: JSON encoding (`jsoncodec`), Faktory's time formats (`timefmt`), Redis-style glob
patterns (`glob`), Faktory's default port (`ports`). They import nothing else of faktory_py."""
