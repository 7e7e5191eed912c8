"""exceptions the rendering pipeline raises; the CLI turns any `PatternLensError` into a message and exit code 1"""

__all__ = ["PatternLensError", "InputError", "FigureFuncTransferError", "RunInterrupted"]


class PatternLensError(Exception):
    """base class of the errors `pattern_lens` raises on purpose (with a message meant for the user)"""


class InputError(PatternLensError):
    """input data missing or malformed: the message names the file and what was expected"""


class FigureFuncTransferError(PatternLensError):
    """a figure function cannot be sent to (or loaded in) a worker process"""


class RunInterrupted(KeyboardInterrupt):
    """the run was stopped by SIGINT (Ctrl-C) or SIGTERM; a `KeyboardInterrupt`, so callers that stop
    on Ctrl-C still do

    Raised by the run's own signal handlers, never by a figure function: a `KeyboardInterrupt` that a
    figure function raises is that function's failure. `signum` is the signal's number (the CLI exits
    with `128 + signum`: 130 for SIGINT, 143 for SIGTERM); the message is one line saying what was done.
    """

    def __init__(self, signum: int, message: str = "") -> None:
        self.signum: int = signum
        super().__init__(message or f"interrupted by signal {signum}")
