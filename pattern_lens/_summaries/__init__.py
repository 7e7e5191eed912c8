"""summaries: what a run says about its heads and about itself

- `stats`: the statistics of one head and its preview, from one read of the pattern
- `summaries`: writing each prompt's `head_stats.json` and each head's `preview.png`
- `summary`: the run's counts, failures and speed (`RenderSummary`), its interrupted line
- `stagebench`: `pattern-lens bench --pipeline`, end to end with the time per stage
"""
