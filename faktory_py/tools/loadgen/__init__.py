"""Load generator and workload definitions for benchmarking Faktory-compatible servers.

`faktory-py bench --url tcp://host:port` drives these workloads against any running server;
the repository's `bench/` package (`python -m bench`) starts faktory_py, the real Faktory and
a bare echo server itself and compares them. Modules:

* `conn`: the one client (`tools.client`), identified, with hiredis parsing the replies,
* `roles`: what one connection does in a workload (push, bulk push, fetch+ACK, beat ...),
* `pool`: runs roles in several processes, one thread per connection, with progress counters,
* `workloads`: the workloads (a)-(g) and their sizes,
* `stats`, `progress`, `cli`: percentiles, the progress line, the `faktory-py bench` command.
"""
