"""Block-deterministic addressing: same (seed, shard, index) -> same example, in any process."""

import json
import subprocess
import sys

import numpy as np
import pytest

from synthetic_pretraining.generators import base
from synthetic_pretraining.generators.registry import get_task
from synthetic_pretraining.vocab_spec import VocabSpec

TASKS = ("set", "delete", "union", "deduct", "longest_word")
ADDRESSES = [(0, 0, 0), (0, 0, 300), (1, 0, 5), (0, 3, 5), (12, 1, 1000)]

_CHILD = """
import json, sys
from synthetic_pretraining.generators import base
from synthetic_pretraining.generators.registry import get_task
from synthetic_pretraining.vocab_spec import VocabSpec
out = {}
for name in %r:
  task = get_task(name, VocabSpec.byte())
  out[name] = [[a.tolist() for a in base.example_at(task, *addr)] for addr in %r]
print(json.dumps(out))
"""


def _here():
  out = {}
  for name in TASKS:
    task = get_task(name, VocabSpec.byte())
    out[name] = [[a.tolist() for a in base.example_at(task, *addr)] for addr in ADDRESSES]
  return out


@pytest.mark.slow
def test_same_address_same_example_in_another_process():
  child = subprocess.run([sys.executable, "-c", _CHILD % (TASKS, ADDRESSES)], check=True,
                         capture_output=True, text=True, timeout=120)
  assert json.loads(child.stdout) == _here()


@pytest.mark.parametrize("name", ["identity", "set", "search", "sort", "induct"])
def test_resumed_stream_equals_the_tail(name):
  task = get_task(name, VocabSpec.byte())
  full = list(base.iter_examples(task, seed=3, shard=1, start=0, stop=700))
  for start in (1, 255, 256, 400):
    resumed = list(base.iter_examples(task, seed=3, shard=1, start=start, stop=700))
    assert len(resumed) == 700 - start
    for (i1, o1), (i2, o2) in zip(full[start:], resumed):
      np.testing.assert_array_equal(i1, i2)
      np.testing.assert_array_equal(o1, o2)


@pytest.mark.parametrize("name", ["identity", "count", "replace", "abduct"])
def test_different_addresses_differ(name):
  task = get_task(name, VocabSpec.byte())
  examples = [base.example_at(task, *addr) for addr in ADDRESSES]
  examples += list(base.iter_examples(task, seed=0, shard=0, start=0, stop=300))
  keys = {(tuple(i.tolist()), tuple(o.tolist())) for i, o in examples}
  assert len(keys) == len(examples) - 1  # Only ADDRESSES[0] (index 0) is drawn twice.
