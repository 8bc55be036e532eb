"""Faktory Enterprise's queue throttles (protocol/spec.md §11): `occupancy` is the index of
slots derived from the reservations, `feature` plugs it into FETCH, the due timer and INFO."""
