"""Loads the C kernels (`_native`, built by `pip install`); `None` where they are not built.

The kernels are pure functions of their inputs (set operations in CPython's set order, per-row
hash maps), so the generators' outputs do not depend on whether they are used: without them the
callers use numpy / Python sets (slower), after one warning.
"""

from __future__ import annotations

import warnings

try:
  from synthetic_pretraining.generators import _native as module
except ImportError:  # A source tree without `pip install`, or no C compiler at install time.
  module = None

_warned = False


def get(enabled: bool = True):
  """The kernel module, or None (disabled, or not built: warns once)."""
  global _warned
  if not enabled:
    return None
  if module is None and not _warned:
    _warned = True
    warnings.warn("synthetic_pretraining.generators._native is not built: generators use their "
                  "numpy / Python-set fallbacks (same output, slower). Reinstall the package "
                  "(`bash scripts/setup.sh`) with a C compiler to build it.")
  return module


def available() -> bool:
  return module is not None
