"""Batches: jobs grouped with success/complete callbacks (protocol/spec.md §10).

`feature` holds the model and the planning over a copy-on-write overlay; the BATCH command
is commands/batch.py.
"""
