"""The pure task functions reproduce the original release's sample lines exactly."""

import pytest

from synthetic_pretraining.generators import lines
from synthetic_pretraining.generators import simple_functions as F
from tests.conftest import shared_data_path
from tests.generators.helpers import T5_ANSWER_IDS, T5_CODE_NAME_IDS, t5_like_spec

SPEC = t5_like_spec()
PAPER_IDS = {code: paper for paper, code in F.CODE_NAMES.items()}


def _sample_lines(code_name):
  path = shared_data_path("original_samples", f"{code_name}.tsv")
  return list(enumerate(lines.read_data_file(path), start=1))


def _args(code_name, inputs):
  """Strips and checks the SPEC prefix and separators by hand, then splits the arguments."""
  prefix = T5_CODE_NAME_IDS[code_name] + [32099]
  assert inputs[:len(prefix)] == prefix
  body = inputs[len(prefix):]
  if F.is_binary(PAPER_IDS[code_name]):
    assert body.count(32097) == 1
    i = body.index(32097)
    return body[:i], body[i + 1:]
  return (body,)


@pytest.mark.parametrize("code_name", sorted(set(T5_CODE_NAME_IDS) - {"count", "length", "search"}))
def test_pure_function_reproduces_release_lines(code_name):
  task = PAPER_IDS[code_name]
  samples = _sample_lines(code_name)
  assert len(samples) == 8
  for lineno, (inputs, outputs) in samples:
    args = _args(code_name, inputs)
    assert F.split_input(task, inputs, SPEC) == args, f"{code_name}.tsv:{lineno}"
    assert F.task_output(task, args, SPEC) == outputs, f"{code_name}.tsv:{lineno}"
    assert F.task_input(task, args, SPEC) == inputs


def test_empty_set_difference_line_gets_the_marker():
  outputs = [o for _, (_, o) in _sample_lines("set_2_minus_1")]
  assert [32096] in outputs  # The release's sample holds an empty result.


def test_search_lines_answer_yes_or_no():
  for lineno, (inputs, outputs) in _sample_lines("search"):
    a, b = _args("search", inputs)
    assert F.task_output("search", (a, b), SPEC) == outputs, f"search.tsv:{lineno}"


@pytest.mark.parametrize("code_name", ["count", "length"])
def test_number_answers_with_known_t5_ids(code_name):
  known = {int(k): v for k, v in T5_ANSWER_IDS.items() if k.isdigit()}
  checked = 0
  for _, (inputs, outputs) in _sample_lines(code_name):
    args = _args(code_name, inputs)
    number = len(args[0]) if code_name == "length" else args[0].count(args[1][0])
    if number in known:
      expected = [t for t in known[number] if t != 3]  # The leading lone "▁" is dropped.
      assert outputs == expected
      assert F.task_output(PAPER_IDS[code_name], args, SPEC) == expected
      checked += 1
  assert checked >= 1
