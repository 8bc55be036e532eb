"""Storage: the in-memory state and the journal that makes it durable."""
