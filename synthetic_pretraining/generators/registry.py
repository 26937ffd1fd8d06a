"""Every synthetic pre-training task by its paper id: names, release code names, construction.

    task = get_task("set", VocabSpec.byte(), length_range=(10, 50))

`nonsense_summary` and `nesting_language` live in their own modules (`nonsense.py`, `nesting.py`)
and are imported only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from synthetic_pretraining.generators import simple_functions
from synthetic_pretraining.generators.base import SyntheticTask
from synthetic_pretraining.generators.lime import LimeTask
from synthetic_pretraining.generators.lines import parse_line
from synthetic_pretraining.generators.simple import SIMPLE_TASKS
from synthetic_pretraining.vocab_spec import VocabSpec

LIME_TASK_NAMES = ("induct", "deduct", "abduct")
OTHER_TASK_NAMES = ("nonsense_summary", "nesting_language")
TASK_NAMES: tuple[str, ...] = (simple_functions.SIMPLE_TASK_NAMES + LIME_TASK_NAMES
                               + OTHER_TASK_NAMES)

# Paper id -> the release's code name (its generator registry key and data folder name).
CODE_NAMES: dict[str, str] = {
    **simple_functions.CODE_NAMES,
    **{mode: f"lime_{mode}" for mode in LIME_TASK_NAMES},
    **{name: name for name in OTHER_TASK_NAMES},
}
_ALIASES = {code: paper for paper, code in CODE_NAMES.items()}

_LAZY_TASKS = {
    "nonsense_summary": ("synthetic_pretraining.generators.nonsense", "NonsenseSummaryTask"),
    "nesting_language": ("synthetic_pretraining.generators.nesting", "NestingLanguageTask"),
}


def canonical_name(name: str) -> str:
  """The paper id for a paper id or a release code name; ValueError listing valid names."""
  if name in CODE_NAMES:
    return name
  if name in _ALIASES:
    return _ALIASES[name]
  raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)}")


def get_task(name: str, spec: VocabSpec, **knobs: Any) -> SyntheticTask:
  """The task `name` (paper id, or the release's code name) bound to `spec` and sampler knobs."""
  name = canonical_name(name)
  if name in SIMPLE_TASKS:
    return SIMPLE_TASKS[name](spec, **knobs)
  if name in LIME_TASK_NAMES:
    return LimeTask(spec, mode=name, **knobs)
  module_name, class_name = _LAZY_TASKS[name]
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name != module_name:
      raise
    raise ValueError(f"task {name!r} is not available: module {module_name} is missing") from None
  return getattr(module, class_name)(spec, **knobs)


__all__ = ["CODE_NAMES", "LIME_TASK_NAMES", "TASK_NAMES", "canonical_name", "get_task",
           "parse_line"]
