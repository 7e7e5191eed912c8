"""the execution engine: which heads run where, in which worker, and what happens when one dies

- `planner`: cutting the work into tasks sized from an estimate corrected as tasks finish
- `backends`: the joblib session (loky, threading, dask, ...) and streaming task results; every way
  a task ends becomes a result, workers die with their parent
- `prestart`: starting workers while the CLI imports
- `worker`: what one task does: list head folders, read a layer once, run the figure functions
- `recovery`: a task whose worker died is split to its culprit head and reported
- `transfer`: shipping figure functions to worker processes; `selection`: choosing them by name
- `run`: `render_prompts`, tying them together; `stream`: `pattern-lens run`, rendering the layers
  of a model as they are computed
"""
