"""stage 2 of the data flow: from a folder of `.npz` patterns to every head's files on disk

- `inputs`: model config, prompt index, the prompts that can be rendered, layer/head selection
- `npz`: reading one layer of an `activations.npz` and checking it; `zipdir`: where a zip member's
  bytes are (central directory, local header); `inflate`: one-call inflate and CRC-32 (libdeflate)
- `planner`: cutting the work into tasks sized from an estimate corrected as tasks finish
- `backends`: the joblib session (loky, threading, dask, ...) and streaming task results; every way
  a task ends becomes a result, workers die with their parent
- `recovery`: a task whose worker died is split to its culprit head and reported
- `worker`: what one task does: list head folders, read a layer once, run the figure functions
- `outputs`: the files a figure function writes in a head folder, resume checks, error files
- `transfer`: shipping figure functions to worker processes
- `atomic`: temp file + rename writes; `indexes`: the jsonl indexes; `summary`: counts and failures
- `run`: `render_prompts`, tying them together; `prestart`: starting workers while the CLI imports
- `stagebench`: `pattern-lens bench --pipeline`, end to end with the time per stage
"""
