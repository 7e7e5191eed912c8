"""loading prompts from jsonl files (the reference's `pattern_lens.prompts`), and the prompt set we ship

`load_text_data` is the reference's: read a jsonl file of `{"text": ...}` objects, drop those shorter
than `min_chars`, cut those longer than `max_chars` into pieces. Lines that are not a JSON object with
a string `"text"` raise `PromptsFileError` naming the file and line (the reference failed on them
with a bare `JSONDecodeError` / `KeyError`); an empty text (`{"text": ""}`) is returned, as the
reference returns it (`min_chars` drops it). `read_prompts_file` instead returns bad lines as
errors so a run can go on with the other prompts, and by default counts an empty text as bad: a
run cannot compute a pattern of no tokens.

`BUILTIN_PROMPTS` is a small prompt set shipped with the package (`pattern_lens/data/prompts.jsonl`),
so the commands run without downloads.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from pattern_lens._errors import InputError

__all__ = [
    "load_text_data",
    "SourcedPrompt",
    "read_prompts_file",
    "split_prompts",
    "PromptsFileError",
    "PromptLineError",
    "BUILTIN_PROMPTS",
]

BUILTIN_PROMPTS: Path = Path(__file__).parent / "data" / "prompts.jsonl"
"""prompts shipped with the package: short texts written for this project (public domain, CC0), of
different lengths and styles; see `pattern_lens/data/README.md`"""


class PromptsFileError(InputError, ValueError):
    """a prompts file is missing, unreadable, or has a line that is not a prompt"""


@dataclass(frozen=True)
class PromptLineError:
    """one bad line of a prompts file: `where` (`file:line`) and what is wrong"""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def read_prompts_file(
    fname: Path | str, allow_empty: bool = False
) -> tuple[list[tuple[str, dict]], list[PromptLineError]]:
    """read a jsonl prompts file, keeping the good lines and listing the bad ones

    A good line is a JSON object with a string `"text"`, not empty or blank unless `allow_empty`;
    blank lines are ignored. Each prompt gets `"source_fname"` (the file, posix) like the
    reference's `load_text_data`.

    # Parameters:
     - `fname : Path | str` the jsonl file
     - `allow_empty : bool` keep a `"text"` with no characters to tokenize (defaults to `False`:
       `run` and `activations` report it; `load_text_data` keeps it, as the reference)

    # Returns:
     - `tuple[list[tuple[str, dict]], list[PromptLineError]]` `(file:line, prompt)` in file order,
       and the bad lines

    # Raises:
     - `PromptsFileError` when the file cannot be opened or decoded
    """
    path = Path(fname)
    prompts: list[tuple[str, dict]] = []
    errors: list[PromptLineError] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise PromptsFileError(f"prompts file not found: {path} (expected jsonl, one {{\"text\": ...}} a line)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PromptsFileError(f"cannot read prompts file {path}: {e}") from e
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(PromptLineError(where, f"not valid JSON ({e})"))
            continue
        if not isinstance(obj, dict):
            errors.append(PromptLineError(where, f"expected a JSON object with 'text', got {type(obj).__name__}"))
        elif "text" not in obj:
            errors.append(PromptLineError(where, f"no 'text' key (keys: {sorted(obj)})"))
        elif not isinstance(obj["text"], str):
            errors.append(PromptLineError(where, f"'text' is {type(obj['text']).__name__}, expected a string"))
        elif not allow_empty and not obj["text"].strip():
            errors.append(PromptLineError(where, "empty prompt: 'text' has no characters to tokenize"))
        else:
            obj["source_fname"] = path.as_posix()
            prompts.append((where, obj))
    return prompts, errors


def split_prompts(
    prompts: list[dict],
    min_chars: int | None = None,
    max_chars: int | None = None,
    shuffle: bool = False,
) -> list[dict]:
    """the reference's length handling: drop short texts, cut long ones into `max_chars` pieces, drop short pieces, shuffle"""
    data = list(prompts)
    if min_chars is not None:
        data = [d for d in data if len(d["text"]) >= min_chars]
    if max_chars is not None:
        pieces: list[dict] = []
        for d in data:
            text: str = d["text"]
            while len(text) > max_chars:
                pieces.append({**d, "text": text[:max_chars]})
                text = text[max_chars:]
            pieces.append({**d, "text": text})
        data = pieces
    if min_chars is not None:
        data = [d for d in data if len(d["text"]) >= min_chars]
    if shuffle:
        random.shuffle(data)
    return data


class SourcedPrompt(dict):
    """a prompt, a plain `dict` to everything else (`json.dumps`, `==`), that also knows where it came
    from: `where` is `file:line`, with ` (piece k)` for a piece of a cut text"""

    where: str = ""


def load_text_data(
    fname: Path,
    min_chars: int | None = None,
    max_chars: int | None = None,
    shuffle: bool = False,
    *,
    bad_lines: list[PromptLineError] | None = None,
    counts: dict | None = None,
) -> list[dict]:
    """read a jsonl file of prompts and split them into reasonable sizes

    # Parameters:
     - `fname : Path` jsonl file, one JSON object with a `"text"` key a line
     - `min_chars : int | None` drop texts (and pieces) shorter than this (defaults to `None`: keep all)
     - `max_chars : int | None` cut longer texts into pieces of at most this many characters
       (defaults to `None`: no cutting)
     - `shuffle : bool` shuffle the result (defaults to `False`)
     - `bad_lines : list[PromptLineError] | None` keyword only, not in the reference: given, bad
       lines (and empty texts) are appended to it and the other prompts returned, instead of raising
       (defaults to `None`)
     - `counts : dict | None` keyword only, not in the reference: given, gets `read` (good lines),
       `too_short` (texts shorter than `min_chars`) and `short_pieces` (last pieces of cut texts
       shorter than `min_chars`), all dropped (defaults to `None`)

    # Returns:
     - `list[dict]` prompts (`SourcedPrompt`: dicts that also carry `where`) with `"text"`, their
       other keys and `"source_fname"`; not necessarily as many as the lines of the file. An empty
       `"text"` is kept (as the reference) unless `min_chars` drops it or `bad_lines` is given

    # Raises:
     - `PromptsFileError` (a `ValueError`) naming the file and line of the first bad line (unless
       `bad_lines` is given), or when the file cannot be read
    """
    prompts, errors = read_prompts_file(fname, allow_empty=bad_lines is None)
    if errors:
        if bad_lines is None:
            raise PromptsFileError(f"{errors[0]}" + (f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""))
        bad_lines.extend(errors)
    out: list[dict] = []
    too_short = short_pieces = 0
    for where, prompt in prompts:
        parts = split_prompts([prompt], min_chars, max_chars)
        n = len(prompt["text"])
        if min_chars is not None and n < min_chars:
            too_short += 1
        elif max_chars is not None and max_chars > 0:
            short_pieces += -(-n // max_chars) - len(parts)
        for k, part in enumerate(parts):
            sp = SourcedPrompt(part)
            sp.where = where if len(parts) == 1 else f"{where} (piece {k + 1})"
            out.append(sp)
    if shuffle:
        random.shuffle(out)
    if counts is not None:
        counts.update(read=len(prompts), too_short=too_short, short_pieces=short_pieces)
    return out
