"""featscope: see what an image classifier has learned.

Public API::

    run = featscope.build("images/", "runs/pets", model="efficientnet-lite0")
    run = featscope.load("runs/pets")      # table as DataFrame, features memory-mapped
    featscope.show(run)                     # the app inline in Jupyter
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["build", "load", "show", "Run", "FeatscopeError", "__version__"]

if TYPE_CHECKING:
    from .errors import FeatscopeError
    from .store import Run


def __getattr__(name: str) -> Any:
    # Heavy libraries (torch, umap, dash) load only when the part that needs them is used.
    if name == "build":
        from .builder import build

        return build
    if name in ("load", "Run"):
        from . import store

        return getattr(store, name)
    if name == "show":
        from .app.server import show

        return show
    if name == "FeatscopeError":
        from .errors import FeatscopeError

        return FeatscopeError
    raise AttributeError(f"module 'featscope' has no attribute {name!r}")
