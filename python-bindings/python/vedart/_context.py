"""Per-context hooks of the engine (scoped with :mod:`contextvars`).

:data:`chunk_hook` and :data:`spawn_hook` are the seams for deterministic
execution. When set (for the calling context only, so other threads keep
running normally), the engine calls ``chunk_hook(chunk_fn, chunk_index)`` for
every chunk it submits, and ``spawn``/``Scope.spawn`` call
``spawn_hook(fn, spawn_index)`` for every callable they start, and run the
function returned instead: e.g. one that seeds ``random`` from
``(seed, index)`` before running the work.
"""

from __future__ import annotations

import contextvars
from typing import Any, Callable, Optional

__all__ = ["chunk_hook", "spawn_hook"]

ChunkHook = Callable[[Callable[[Any], Any], int], Callable[[Any], Any]]

#: See the module documentation; ``None`` (the default) means no hook.
chunk_hook: contextvars.ContextVar[Optional[ChunkHook]] = contextvars.ContextVar(
    "vedart_chunk_hook", default=None
)

#: See the module documentation; ``None`` (the default) means no hook.
spawn_hook: contextvars.ContextVar[Optional[ChunkHook]] = contextvars.ContextVar(
    "vedart_spawn_hook", default=None
)
