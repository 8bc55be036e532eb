"""Cron: `[[cron]]` entries that fire jobs through the PUSH path (protocol/spec.md §12)."""
