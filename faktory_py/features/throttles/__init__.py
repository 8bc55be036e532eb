"""Faktory Enterprise's queue throttles and our named limits (protocol/spec.md §11): `rules`
says which limits a job is subject to and in which partition (its class), `occupancy` and
`rate` are the slots and rate windows derived from the reservations, `classes` the queued
jobs by class derived from the queues, `feature` plugs them into FETCH, the due timer and
INFO."""
