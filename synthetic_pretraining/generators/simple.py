"""The 18 simple synthetic tasks of the paper (SPEC §1): task classes and pure functions.

`SIMPLE_TASKS` maps the paper's id to the task class; `simple_functions` holds the pure reference
functions (`task_output`), the release's code names and the input layout.
"""

from __future__ import annotations

from synthetic_pretraining.generators import simple_binary as binary
from synthetic_pretraining.generators import simple_unary as unary
from synthetic_pretraining.generators.simple_base import SimpleTask
from synthetic_pretraining.generators.simple_functions import (CODE_NAMES, SIMPLE_TASK_NAMES,
                                                               split_input, task_input,
                                                               task_output, task_prefix)

SIMPLE_TASKS: dict[str, type[SimpleTask]] = {
    cls.name: cls for cls in (
        unary.IdentityTask, unary.ReverseTask, unary.DuplicateTask, unary.FirstTokenTask,
        unary.LastTokenTask, unary.LengthTask, unary.SetTask, unary.DeduplicateTask,
        unary.LongestWordTask, binary.CountTask, binary.SearchTask, binary.DeleteTask,
        binary.SortTask, binary.ReplaceTask, binary.UnionTask, binary.IntersectTask,
        binary.Set1MinusSet2Task, binary.Set2MinusSet1Task)
}
assert tuple(SIMPLE_TASKS) == SIMPLE_TASK_NAMES

__all__ = ["CODE_NAMES", "SIMPLE_TASKS", "SIMPLE_TASK_NAMES", "SimpleTask", "split_input",
           "task_input", "task_output", "task_prefix"]
