"""stand-ins for the standard-library modules the reference's server is written with

The reference's `pattern_lens.server` calls `socketserver.TCPServer(("", port),
http.server.SimpleHTTPRequestHandler)`, and its tests (and users' code) patch or subclass those
names through it: `mock.patch("pattern_lens.server.socketserver.TCPServer")`,
`mock.patch("pattern_lens.server.http.server.SimpleHTTPRequestHandler")`. Our server module exposes
`socketserver` and `http` made here: module objects that answer every name from the real module,
except that `TCPServer` and `SimpleHTTPRequestHandler` are this package's safe classes (confined to
the folder, `Host` checked, threaded). So:

- code written against the reference gets the safe server without a change;
- patching a name through `pattern_lens.server` replaces it there only (the real `socketserver`
  and `http.server` are left alone, and nothing subclasses a mock by accident);
- a name patched in the real module (`mock.patch("socketserver.TCPServer")`) is seen here too.
"""

from __future__ import annotations

import importlib
import types

__all__ = ["overlay"]


def overlay(module_name: str, **safe: object) -> types.ModuleType:
    """a module object named like `module_name` whose names are the real module's, live, but for `safe`

    A name of `safe` is answered with the safe object while the real module still holds its
    original; once the real name has been replaced (a test's patch), the replacement is answered.
    Setting a name on the overlay (`mock.patch` through it) shadows both until it is deleted.
    """
    real = importlib.import_module(module_name)
    originals = {name: getattr(real, name, None) for name in safe}
    out = types.ModuleType(module_name, real.__doc__)

    def __getattr__(name: str) -> object:
        if name in safe:
            current = getattr(real, name, None)
            return safe[name] if current is originals[name] else current
        return getattr(real, name)

    def __dir__() -> list[str]:
        return sorted({*dir(real), *safe})

    out.__getattr__ = __getattr__  # type: ignore[method-assign]  # PEP 562: consulted for names not set
    out.__dir__ = __dir__  # type: ignore[method-assign]
    return out
