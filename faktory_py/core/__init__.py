"""Job semantics, pure: the job payload (`jobs`), the lifecycle over a store (`lifecycle`),
the hooks features plug into (`hooks`), worker processes (`workers`), the INFO document
(`info`). No I/O, no trio: every call takes "now" from its caller."""
