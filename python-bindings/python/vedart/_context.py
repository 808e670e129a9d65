"""Per-context hooks of the engine (scoped with :mod:`contextvars`).

:data:`chunk_hook` is the seam for deterministic execution: when set (for the
calling context only, so other threads keep running normally), the engine calls
``hook(chunk_fn, chunk_index)`` for every chunk it submits and runs the
function it returns instead, e.g. one that seeds ``random`` from
``(seed, chunk_index)`` before running the chunk.
"""

from __future__ import annotations

import contextvars
from typing import Any, Callable, Optional

__all__ = ["chunk_hook"]

ChunkHook = Callable[[Callable[[Any], Any], int], Callable[[Any], Any]]

#: See the module documentation; ``None`` (the default) means no hook.
chunk_hook: contextvars.ContextVar[Optional[ChunkHook]] = contextvars.ContextVar(
    "vedart_chunk_hook", default=None
)
