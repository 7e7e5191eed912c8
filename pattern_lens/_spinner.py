"""`SpinnerContext`: the interface of `muutils.spinner.SpinnerContext`, which the reference's
`pattern_lens.figures` imports, without depending on muutils

Minimal on purpose: no animation thread. Entering writes the first frame (`format_string` with the
first spinner character), `update_value` stores the value (and writes a line at once when
`format_string_when_updated` asks for it), leaving writes the final frame with the completion mark
and the elapsed time, then a newline. The reference's code and tests that construct, enter or patch
`pattern_lens.figures.SpinnerContext` work unchanged.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["SpinnerContext", "SPINNER_CHARS"]

SPINNER_CHARS: dict[str, Sequence[str]] = {
    "default": ["|", "/", "-", "\\"],
    "dots": [".  ", ".. ", "..."],
    "bars": ["|  ", "|| ", "|||"],
    "arrows": ["<", "^", ">", "v"],
}
"a few of muutils' named spinner character sets; a name not here uses `default`"

_COMPLETE: dict[str, str] = {"default": "#", "dots": "***", "bars": "|||"}


def _from_config(config: Any) -> tuple[str | Sequence[str] | None, str | None]:
    """(working characters or a name, completion mark) from muutils' `config` argument"""
    if isinstance(config, (str, list, tuple)):
        return config, None
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    return get("working", None), get("success", None)


class SpinnerContext:
    """context manager showing a message while a block runs, and how long it took

    # Parameters (keyword-only, as in muutils):
     - `config : str | Sequence[str] | dict | None` newer muutils' form, which the reference's
       `SPINNER_KWARGS = dict(config=dict(success="✔️ "))` uses: a name in `SPINNER_CHARS`, the
       characters, or a dict (or object) with `working` (characters) and `success` (the completion
       mark); wins over `spinner_chars` / `spinner_complete` (defaults to `None`)
     - `spinner_chars : str | Sequence[str]` a name in `SPINNER_CHARS` or the characters
       (defaults to `"default"`)
     - `update_interval : float` accepted for compatibility; nothing animates (defaults to `0.1`)
     - `spinner_complete : str | None` the mark written at the end (defaults to `None`: the set's own)
     - `initial_value : str` shown after the message (defaults to `""`)
     - `message : str` (defaults to `""`)
     - `format_string : str` with keys `spinner`, `elapsed_time`, `message`, `value`
       (defaults to `"\\r{spinner} ({elapsed_time:.2f}s) {message}{value}"`)
     - `output_stream : TextIO | None` (defaults to `None`: `sys.stdout` at construction)
     - `format_string_when_updated : str | bool` `True`: write `format_string` plus a newline on
       each `update_value`; a string: write that one (defaults to `False`: write nothing)

    # Raises:
     - `ValueError` for positional or unknown keyword arguments, or a `format_string` without
       those keys (as muutils)
     - `TypeError` for a `format_string_when_updated` neither str nor bool
    """

    def __init__(
        self,
        *args: Any,
        config: str | Sequence[str] | dict | Any | None = None,
        spinner_chars: str | Sequence[str] = "default",
        update_interval: float = 0.1,
        spinner_complete: str | None = None,
        initial_value: str = "",
        message: str = "",
        format_string: str = "\r{spinner} ({elapsed_time:.2f}s) {message}{value}",
        output_stream: TextIO | None = None,
        format_string_when_updated: str | bool = False,
        **kwargs: Any,
    ) -> None:
        if args:
            raise ValueError(f"SpinnerContext does not accept positional arguments: {args}")
        if kwargs:
            raise ValueError(f"SpinnerContext did not recognize these keyword arguments: {kwargs}")
        if config is not None:
            working, success = _from_config(config)
            spinner_chars = working if working is not None else spinner_chars
            spinner_complete = success if success is not None else spinner_complete
        named = isinstance(spinner_chars, str)
        self.spinner_chars: Sequence[str] = (
            SPINNER_CHARS.get(spinner_chars, SPINNER_CHARS["default"]) if named else spinner_chars
        )
        self.spinner_complete: str = (
            spinner_complete
            if spinner_complete is not None
            else (_COMPLETE.get(spinner_chars, "#") if named else "#")
        )
        if format_string_when_updated is True:
            self.format_string_when_updated: str | None = format_string + "\n"
        elif format_string_when_updated is False:
            self.format_string_when_updated = None
        elif isinstance(format_string_when_updated, str):
            self.format_string_when_updated = format_string_when_updated
        else:
            raise TypeError(
                f"format_string_when_updated must be a string or a bool, got {format_string_when_updated!r}"
            )
        self.update_interval: float = update_interval
        self.message: str = message
        self.current_value: Any = initial_value
        self.format_string: str = format_string
        self.output_stream: TextIO = output_stream if output_stream is not None else sys.stdout
        self.start_time: float = time.time()
        try:
            self._line(self.spinner_chars[0])
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"Invalid format string: {format_string!r}. Must take keys 'spinner: str', "
                "'elapsed_time: float', 'message: str', and 'value: Any'."
            ) from e

    def _line(self, spinner: str, fmt: str | None = None) -> str:
        return (fmt or self.format_string).format(
            spinner=spinner,
            elapsed_time=time.time() - self.start_time,
            message=self.message,
            value=self.current_value,
        )

    def _write(self, text: str) -> None:
        self.output_stream.write(text)
        self.output_stream.flush()

    def update_value(self, value: Any) -> None:
        """change the value shown after the message"""
        self.current_value = value
        if self.format_string_when_updated is not None:
            self._write(self._line(self.spinner_chars[0], self.format_string_when_updated))

    def start(self) -> None:
        """write the first frame and start the clock"""
        self.start_time = time.time()
        self._write(self._line(self.spinner_chars[0]))

    def stop(self) -> None:
        """write the final frame (completion mark, elapsed time) and a newline"""
        self._write(self._line(self.spinner_complete) + "\n")

    def __enter__(self) -> SpinnerContext:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.stop()
