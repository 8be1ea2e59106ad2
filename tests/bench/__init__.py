"""Load benchmark for alertbridge (not part of `make test` except one short smoke test).

See tests/bench/README.md: `loadgen.py` (closed-loop aiohttp load generator), `run.py`
(orchestrator: throughput, memory, end-to-end, profile; side by side with Alertmanager).
"""
