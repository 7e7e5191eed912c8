"""writing outputs: the files of a head folder, written whole or not at all, and the indexes

- `outputs`: the files a figure function writes in a head folder, resume checks, error files
- `atomic`: temp file + rename writes, stale temp files of dead writers
- `indexes`: the jsonl indexes the gallery reads (`figures.jsonl`, `models.jsonl`, `prompts.jsonl`)
"""
