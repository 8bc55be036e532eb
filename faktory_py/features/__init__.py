"""Faktory Enterprise's features, built in: job expiry, unique jobs, job tracking, batches.
Each plugs into `core.hooks`; none may import the server."""
