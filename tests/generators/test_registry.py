"""Task names, release code names, construction and the line parser."""

import pytest

from synthetic_pretraining.generators import registry
from synthetic_pretraining.generators.base import SyntheticTask
from synthetic_pretraining.vocab_spec import VocabSpec


def test_names_and_code_names():
  assert len(registry.TASK_NAMES) == 23 and len(set(registry.TASK_NAMES)) == 23
  assert registry.CODE_NAMES["identity"] == "copy"
  assert registry.CODE_NAMES["set1_minus_set2"] == "set_1_minus_2"
  assert registry.CODE_NAMES["induct"] == "lime_induct"
  assert registry.canonical_name("first_char") == "first_token"


@pytest.mark.parametrize("name", registry.TASK_NAMES[:21])
def test_every_generator_task_builds_and_samples(name):
  task = registry.get_task(name, VocabSpec.byte())
  assert isinstance(task, SyntheticTask) and task.name == name
  import numpy as np  # pylint: disable=g-import-not-at-top
  inputs, outputs = task.sample(np.random.default_rng(0))
  assert inputs.ndim == 1 and len(inputs) > 0 and len(outputs) > 0


def test_code_name_alias_and_knobs():
  task = registry.get_task("copy", VocabSpec.byte(), length_range=(5, 6))
  assert task.name == "identity" and task.length_range == (5, 6)


def test_unknown_task_lists_the_valid_names():
  with pytest.raises(ValueError) as e:
    registry.get_task("sett", VocabSpec.byte())
  message = str(e.value)
  assert "'sett'" in message and all(name in message for name in registry.TASK_NAMES)


def test_unknown_knob_is_a_type_error():
  with pytest.raises(TypeError):
    registry.get_task("set", VocabSpec.byte(), not_a_knob=1)


def test_parse_line():
  assert registry.parse_line("[1, 2]\t[3]\n") == ([1, 2], [3])
  assert registry.parse_line("[]\t[32096]") == ([], [32096])
  for bad in ("[1, 2] [3]", "[1, 2]\t3", "[1,2]\t[3]", "[1, x]\t[3]", "[1]\t[2]\t[3]"):
    with pytest.raises(ValueError):
      registry.parse_line(bad)


@pytest.mark.parametrize("name", registry.OTHER_TASK_NAMES)
def test_lazily_imported_tasks(name, monkeypatch):
  task = registry.get_task(name, VocabSpec.byte())
  assert isinstance(task, SyntheticTask)
  monkeypatch.setitem(registry._LAZY_TASKS, name, ("synthetic_pretraining.generators.absent", "X"))
  with pytest.raises(ValueError, match="not available"):
    registry.get_task(name, VocabSpec.byte())
