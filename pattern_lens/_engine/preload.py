"""imported by the warm backend's forkserver before it forks workers: the render path, warm

Importing this module imports what every task needs and loads the kernels of both export profiles
and of the head summaries, so that each worker forked from the server starts warm
(`pattern_lens._engine.warm`).
"""

from pattern_lens._engine.warmup import warm_worker

warm_worker(("exact", "fast"), ())
