"""invoke, imported without unittest.mock (issue 18: start fast).

invoke/context.py imports `Mock` from unittest.mock when it is imported, for its
MockContext, which labctl never uses; unittest.mock (asyncio under it) costs every labctl
command ~25 ms of its start. So the command line imports invoke through this module, first:
while invoke is imported, sys.modules["unittest.mock"] is a stand-in whose `Mock` imports the
real unittest.mock when called and makes a real Mock; then the stand-in is removed, so any
later `import unittest.mock` gets the real module, and a MockContext works as ever.

Nothing is done when invoke or unittest.mock is already imported: under pytest, or when
`invoke` itself runs tasks.py.
"""

from __future__ import annotations

import sys
import types
from typing import Any

MOCK = "unittest.mock"


def _mock(*args: Any, **kwargs: Any) -> Any:
    """unittest.mock.Mock(*args, **kwargs), unittest.mock imported on the first call."""
    from unittest.mock import Mock

    return Mock(*args, **kwargs)


def import_invoke() -> None:
    if "invoke" in sys.modules or MOCK in sys.modules:
        return
    stand_in = types.ModuleType(MOCK, "labctl's stand-in while invoke is imported")
    stand_in.Mock = _mock  # type: ignore[attr-defined]
    sys.modules[MOCK] = stand_in
    try:
        import invoke  # noqa: F401
    finally:
        if sys.modules.get(MOCK) is stand_in:
            del sys.modules[MOCK]


import_invoke()
