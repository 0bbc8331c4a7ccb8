"""The benchmark harness: the suite in its production profile against fake upstreams, side by side with LiteLLM.

`python -m bench.run` runs the scenario matrix and writes `bench/results/<timestamp>.json`;
`bench.loadgen` is the load generator (its own process); `bench.litellm_proxy` runs LiteLLM proxy
on the same upstreams for comparison.
"""
