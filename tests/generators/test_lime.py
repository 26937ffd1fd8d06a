"""LIME induct/deduct/abduct: structure parsed back from the ids, symbol ids, lengths, knobs."""

import numpy as np
import pytest

from synthetic_pretraining.generators import lime
from synthetic_pretraining.vocab_spec import VocabSpec
from tests.generators.helpers import t5_like_spec

T5 = t5_like_spec()


def _examples(task, blocks=2, seed=0):
  rng = np.random.default_rng(seed)
  return [ex for _ in range(blocks) for ex in task.sample_block(rng, 256)]


def _check_structure(parts: lime.LimeParts, symbols, alphabet_high):
  uppers, lowers, maths = parts.uppers, parts.lowers, parts.maths
  assert len(lowers) == 24 and len(maths) == 20
  all_ids = uppers + lowers + maths
  assert len(set(all_ids)) == len(all_ids)  # Distinct symbols; U' has no repeats.
  assert all(2 <= t <= alphabet_high for t in all_ids)
  assert not set(all_ids) & set(symbols)
  assert 1 <= len(uppers) <= 5
  variables = [t for t in parts.pattern if t in parts.substitution]
  math_in_pattern = [t for t in parts.pattern if t not in parts.substitution]
  assert len(variables) in (6, 8, 10) and len(uppers) <= len(variables) // 2
  assert set(variables) == set(uppers) and list(parts.substitution) == uppers
  assert set(math_in_pattern) <= set(maths) and 5 <= len(math_in_pattern) <= 19
  for string in parts.substitution.values():
    assert 2 <= len(string) <= 8 and set(string) <= set(lowers) | set(maths)
  assert lime.apply_substitution(parts.pattern, parts.substitution) == parts.result


@pytest.mark.parametrize("mode", lime.MODES)
def test_examples_parse_back_and_satisfy_the_invariants(mode):
  task = lime.LimeTask(T5, mode)
  assert task.name == mode
  symbols = task.symbols
  assert symbols == [32000, 32001, 32002, 32003, 32004, 32005, 32006]
  for inputs, outputs in _examples(task):
    assert inputs.dtype == np.int32 and outputs.dtype == np.int32
    assert len(inputs) <= 220 and len(outputs) <= 220
    parts = lime.parse_example(mode, inputs, outputs, symbols)
    _check_structure(parts, symbols, 31999)
    # Rebuild the example from its parts: the layout is exactly the SPEC's.
    header = ([symbols[lime.UPPER]] + parts.uppers + [symbols[lime.LOWER]] + parts.lowers
              + [symbols[lime.MATH]] + parts.maths + [symbols[lime.SEP]])
    subst = lime.substitution_ids(parts.uppers, parts.substitution, symbols)
    expected = {
        "induct": (header + parts.result + [symbols[lime.SEP]] + subst, parts.pattern),
        "deduct": (header + parts.pattern + [symbols[lime.SEP]] + subst, parts.result),
        "abduct": (header + parts.pattern + [symbols[lime.SEP]] + parts.result, subst),
    }[mode]
    assert (inputs.tolist(), outputs.tolist()) == expected


def test_same_draws_give_consistent_modes():
  # The three modes share the sampler: with the same rng they present the same underlying example.
  parts = {}
  for mode in lime.MODES:
    inputs, outputs = lime.LimeTask(T5, mode).sample(np.random.default_rng(7))
    parts[mode] = lime.parse_example(mode, inputs, outputs, lime.symbol_ids(T5))
  assert parts["induct"] == parts["deduct"] == parts["abduct"]


def test_top_of_base_symbols_variant():
  task = lime.LimeTask(T5, "deduct", symbols="top_of_base")
  assert task.symbols == list(range(31900, 31907))
  for inputs, outputs in _examples(task, blocks=1):
    parts = lime.parse_example("deduct", inputs, outputs, task.symbols)
    _check_structure(parts, task.symbols, 31899)


def test_byte_vocabulary_and_explicit_symbols():
  spec = VocabSpec.byte()
  task = lime.LimeTask(spec, "abduct")
  assert task.symbols == [259 + k for k in range(7)]
  with pytest.raises(ValueError, match="must not contain"):
    lime.LimeTask(spec, "abduct", symbols=[3, 4, 5, 6, 7, 8, 9])
  with pytest.raises(ValueError, match="7 distinct ids"):
    lime.LimeTask(spec, "abduct", symbols=[300, 300, 301, 302, 303, 304, 305])
  with pytest.raises(ValueError, match="unknown LIME mode"):
    lime.LimeTask(spec, "transduct")


def test_length_rejection_and_knobs():
  # With 5 variables and 8-symbol strings, deduct inputs have 58 + 14|U'| + p items (commas
  # counted): a limit of 130 keeps |U'| <= 4 and rejects every |U'| = 5 draw.
  task = lime.LimeTask(T5, "deduct", length_range=(0, 130), num_vars_range=(5, 5),
                       subst_length_range=(8, 8), pattern_math_range=(5, 10))
  used = set()
  for inputs, outputs in _examples(task, blocks=1):
    parts = lime.parse_example("deduct", inputs, outputs, task.symbols)
    assert all(len(s) == 8 for s in parts.substitution.values())
    items = len(inputs) + len(parts.uppers) - 1
    assert items == 58 + 14 * len(parts.uppers) + len(parts.pattern) - 10
    assert items <= 130
    used.add(len(parts.uppers))
  assert 4 in used and 5 not in used
  with pytest.raises(ValueError, match="no example fits"):
    lime.LimeTask(T5, "deduct", length_range=(0, 40)).sample(np.random.default_rng(0))


def test_small_alphabet_still_gives_distinct_symbols():
  task = lime.LimeTask(T5, "induct", alphabet=list(range(1000, 1070)))
  for inputs, outputs in _examples(task, blocks=1):
    parts = lime.parse_example("induct", inputs, outputs, task.symbols)
    ids = parts.uppers + parts.lowers + parts.maths
    assert len(set(ids)) == len(ids) and set(ids) <= set(range(1000, 1070))
  with pytest.raises(ValueError, match="68 distinct ids"):
    lime.LimeTask(T5, "induct", alphabet=list(range(1000, 1060)))
