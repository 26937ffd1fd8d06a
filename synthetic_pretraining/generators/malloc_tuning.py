"""Keep glibc from returning freed memory to the OS between blocks (a generator process option).

A block's numpy temporaries are a few hundred kB each. With glibc's defaults such buffers are
mmap'ed or trimmed from the heap top when freed, so every block pays page faults again on fresh
memory; that costs about as much as the sampling itself. Raising the mmap and trim thresholds
keeps the memory in the process (tens of MB at most). This changes process-wide allocator
settings, so only the generator's own entry points (`generate`, its workers, the benchmark) call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 128 << 20) -> bool:
  """Sets glibc's mmap/trim thresholds; returns False (and does nothing) elsewhere."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
  return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
      mallopt(_M_TRIM_THRESHOLD, trim_threshold))
