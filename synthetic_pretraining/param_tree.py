"""Parameter trees as flat name → leaf mappings ('encoder/layers_0/mlp/wi/kernel'), and back.

T5X names parameters by their '/'-joined path; checkpoints import, statistics initialisation,
weight transfer and reports all work on that flat view.
"""

from __future__ import annotations

import collections.abc
from typing import Any, Mapping


def flatten(tree: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
  """Nested mapping → `{'a/b/c': leaf}`, in traversal order."""
  if not isinstance(tree, collections.abc.Mapping):
    raise TypeError(f"expected a nested mapping of parameters, got {type(tree).__name__}")
  flat: dict[str, Any] = {}

  def visit(node: Mapping[str, Any], prefix: str) -> None:
    for key, value in node.items():
      name = f"{prefix}{sep}{key}" if prefix else str(key)
      if isinstance(value, collections.abc.Mapping):
        visit(value, name)
      else:
        flat[name] = value

  visit(tree, "")
  return flat


def unflatten(flat: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
  """Inverse of `flatten`: `{'a/b': x}` → `{'a': {'b': x}}` (plain dicts)."""
  tree: dict[str, Any] = {}
  for name, value in flat.items():
    *parents, leaf = name.split(sep)
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree
