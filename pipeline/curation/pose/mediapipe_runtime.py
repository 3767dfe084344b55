"""Import MediaPipe without the one harmless line its bindings print under protobuf 7.

Loading ``mediapipe.python._framework_bindings`` with protobuf 7 prints
"AttributeError: 'MessageFactory' object has no attribute 'GetPrototype'" to
stderr and goes on: the bindings look for an API that protobuf 7 removed and
the project never calls (`pipeline.curation.pose.mediapipe_pose`'s docstring says why
protobuf stays at 7). Every run that estimates poses would start with that
alarming line, so it is dropped; anything else printed passes through.
"""

from __future__ import annotations

import contextlib
import io
import sys
from types import ModuleType

HARMLESS = "AttributeError: 'MessageFactory' object has no attribute 'GetPrototype'"


def import_mediapipe() -> ModuleType:
    """The ``mediapipe`` module (ImportError when it is not installed)."""
    if sys.modules.get("mediapipe") is not None:
        return sys.modules["mediapipe"]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            import mediapipe
    finally:
        kept = [line for line in printed.getvalue().splitlines(keepends=True) if line.strip() != HARMLESS]
        sys.stderr.write("".join(kept))
    return mediapipe
