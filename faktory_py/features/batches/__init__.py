"""Batches: jobs grouped with success/complete callbacks (protocol/spec.md §10).

`feature` holds the model, the planning over a copy-on-write overlay, and the BATCH command.
"""
