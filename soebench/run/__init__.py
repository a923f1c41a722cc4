"""Pieces of an evaluation run: generation cache, per-sample rows and summary, shard merge,
report (markdown/HTML + plots) and the comparison of several runs."""
