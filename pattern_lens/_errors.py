"""exceptions the rendering pipeline raises; the CLI turns any `PatternLensError` into a message and exit code 1"""

__all__ = ["PatternLensError", "InputError", "FigureFuncTransferError"]


class PatternLensError(Exception):
    """base class of the errors `pattern_lens` raises on purpose (with a message meant for the user)"""


class InputError(PatternLensError):
    """input data missing or malformed: the message names the file and what was expected"""


class FigureFuncTransferError(PatternLensError):
    """a figure function cannot be sent to (or loaded in) a worker process"""
