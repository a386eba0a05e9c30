"""Give memory that was freed back to the operating system.

glibc's allocator keeps freed heap memory for reuse. After a burst of large
requests (a queue full of multi-megabyte payloads), that is hundreds of
megabytes a hub no longer uses and still holds: ``bench/memory.py`` measured
a resnet18 hub at 302 MB before such a burst and 863 MB five seconds after.
``malloc_trim`` returns it. Elsewhere (no glibc) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("edgecut.hub")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc
        return None


def release_freed_memory() -> bool:
    """Return the allocator's free memory to the OS; True if this platform can."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
