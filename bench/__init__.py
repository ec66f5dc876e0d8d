"""Benchmarks: API-call counts and memory, run as scripts (see bench/README.md); never timed
tests. ``stripe_seed`` is shared with the pytest that guards the CRM cost target."""
