"""Benchmark orchestration: `python -m bench` (see bench/README.md).

The load generator and the workloads themselves live in the package (`faktory_py.tools.loadgen`),
so `faktory-py bench --url ...` works against any server; this package starts and stops the
servers, repeats the workloads, and writes results.json, RESULTS.md and results.png.
"""
