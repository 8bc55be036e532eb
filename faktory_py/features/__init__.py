"""Faktory Enterprise's features, built in: job expiry, unique jobs, job tracking, batches.
Each plugs in through the `core.registry.Feature` record its `feature()` builds; none may
import the server."""
