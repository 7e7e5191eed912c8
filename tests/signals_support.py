"""a Ctrl-C that reaches the processes the tests start, however the test run itself was started

A command started in the background by a non-interactive shell (`cmd &` in a CI script, `nohup ... &`)
starts with SIGINT ignored, and every process it starts inherits that: a Python started so keeps
ignoring SIGINT (it installs its KeyboardInterrupt handler only over the default disposition), and
the tests that press Ctrl-C on a run or a server would see it go on. That is right for a user's
background job; the tests need what a terminal gives, so the processes they start get the default.
"""

import signal


def sigint_reaches_children() -> None:
    """SIGINT back to Python's own handler in this process, so that processes started from it get the
    default disposition (a caught signal is reset at exec; an ignored one is not)"""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
