"""the progress bar of long runs: tqdm, made safe to interrupt while it is being made"""

from __future__ import annotations

from tqdm import tqdm

__all__ = ["ProgressBar"]


class ProgressBar(tqdm):
    """`tqdm`, whose finaliser leaves alone a bar that a Ctrl-C interrupted while it was being made

    A `KeyboardInterrupt` (or the run's `RunInterrupted`, raised by its signal handler wherever the
    main thread is) inside `tqdm.__init__` leaves an object without the attributes its `close` reads;
    when that object went, tqdm's `__del__` printed "Exception ignored in ... AttributeError: 'tqdm'
    object has no attribute 'pos'" and a traceback after the run's one line (seen with a Ctrl-C
    0.5 s into a run). A bar made whole closes as tqdm's does.
    """

    _made: bool = False
    "set once tqdm's `__init__` has returned"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._made = True

    def __del__(self) -> None:
        if self._made:
            super().__del__()
