"""Batches: jobs grouped with success/complete callbacks (protocol/spec.md §10).

`model`: the batch record and its rules; `planner`: the ops of a change, planned on a
copy-on-write overlay; `feature`: the state, the hooks and the operations BATCH calls (the
command itself is commands/batch.py).
"""
