"""The vectorised samplers of the 18 simple tasks: outputs, lengths, argument structure, laws."""

import collections
import itertools
import math

import numpy as np
import pytest

from synthetic_pretraining.generators import simple_functions as F
from synthetic_pretraining.generators.simple import SIMPLE_TASKS
from synthetic_pretraining.vocab_spec import VocabSpec
from tests.generators.helpers import decode_bytes, t5_like_spec

SPECS = {"byte": VocabSpec.byte(), "t5": t5_like_spec()}


def _draw(task, blocks=1, seed=0):
  rng = np.random.default_rng(seed)
  return [ex for _ in range(blocks) for ex in task.sample_block(rng, 256)]


def _args(task, inputs):
  return task.split_input(inputs.tolist())


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("name", F.SIMPLE_TASK_NAMES)
def test_outputs_equal_the_pure_function(name, spec_name):
  task = SIMPLE_TASKS[name](SPECS[spec_name])
  examples = _draw(task)
  assert len(examples) == 256
  for inputs, outputs in examples:
    assert inputs.dtype == np.int32 and outputs.dtype == np.int32
    assert outputs.tolist() == task.output(_args(task, inputs))


@pytest.mark.parametrize("length_range", [(10, 220), (12, 40), (50, 300)])
@pytest.mark.parametrize("name", F.SIMPLE_TASK_NAMES)
def test_lengths_stay_in_range(name, length_range):
  spec = SPECS["t5"]
  task = SIMPLE_TASKS[name](spec, length_range=length_range)
  lo, hi = length_range
  lengths = []
  for inputs, outputs in _draw(task, seed=hash(length_range) % 1000):
    args = _args(task, inputs)
    lengths.append(sum(len(a) for a in args) + len(args) - 1)
    assert outputs.tolist() == task.output(args)
    assert all(spec.symbol_low <= t <= spec.symbol_high or t == task.word_divider
               for a in args for t in a)
  assert lo <= min(lengths) and max(lengths) <= hi
  assert max(lengths) - min(lengths) > (hi - lo) // 3  # The range is actually explored.


def test_byte_answers_decode_to_numbers_and_words():
  spec = SPECS["byte"]
  for inputs, outputs in _draw(SIMPLE_TASKS["length"](spec)):
    (x,) = _args(SIMPLE_TASKS["length"](spec), inputs)
    assert decode_bytes(outputs) == str(len(x))
  count = SIMPLE_TASKS["count"](spec)
  for inputs, outputs in _draw(count):
    a, b = _args(count, inputs)
    assert len(b) == 1
    assert decode_bytes(outputs) == str(a.count(b[0]))
  search = SIMPLE_TASKS["search"](spec)
  answers = collections.Counter()
  for inputs, outputs in _draw(search):
    a, b = _args(search, inputs)
    answer = decode_bytes(outputs)
    answers[answer] += 1
    assert answer == ("yes" if F.find(a, b) != -1 else "no")
  assert set(answers) == {"yes", "no"}


def _occurrence_probability(p_occurrence, lo=10, hi=220, prop=0.5, p_longer=0.01):
  """P(the query occurs) after the release's whole-sample length rejection, by enumeration."""
  def ok(s, q):
    return lo <= s + q + 1 <= hi

  q_max = int((hi - 1) / (1 + 1 / prop))
  accept_occ = sum(
      sum(ok(s, q) for s in range(math.ceil(q / prop), hi - q)) / (hi - q - math.ceil(q / prop))
      for q in range(1, q_max + 1)) / q_max
  accept_longer = sum(sum(ok(s, q) for s in range(q)) / q
                      for q in range(lo + 1, hi + 1)) / (hi - lo)
  accept_main = sum(sum(ok(s, q) for q in range(lo, s + 1)) / (s - lo + 1)
                    for s in range(lo, hi + 1)) / (hi - lo + 1)
  accept_none = p_longer * accept_longer + (1 - p_longer) * accept_main
  yes = p_occurrence * accept_occ
  return yes / (yes + (1 - p_occurrence) * accept_none)


@pytest.mark.parametrize("name,p_occurrence", [("search", 0.5), ("delete", 0.75),
                                               ("search", 0.2)])
def test_occurrence_ratio_matches_the_release_law(name, p_occurrence):
  kwargs = {} if p_occurrence in (0.5, 0.75) else {"p_occurrence": p_occurrence}
  task = SIMPLE_TASKS[name](SPECS["t5"], **kwargs)
  examples = _draw(task, blocks=12)
  found = np.mean([F.find(*_args(task, inputs)) != -1 for inputs, _ in examples])
  expected = _occurrence_probability(p_occurrence)
  assert expected > p_occurrence  # The "no occurrence" sampler is rejected more often.
  assert abs(found - expected) < 4 * math.sqrt(expected * (1 - expected) / len(examples)) + 0.005


def test_binary_argument_structure():
  spec = SPECS["t5"]
  lo, hi = 10, 220
  for name in ("union", "intersect", "set1_minus_set2", "set2_minus_set1"):
    task = SIMPLE_TASKS[name](spec)
    for inputs, _ in _draw(task):
      a, b = _args(task, inputs)
      total = len(a) + len(b)
      assert lo - 1 <= total <= hi - 1
      assert len(set(a) | set(b)) <= total // 2  # Drawn from a pool of T // 2 distinct tokens.
  replace = SIMPLE_TASKS["replace"](spec)
  for inputs, _ in _draw(replace):
    a, b = _args(replace, inputs)
    assert len(b) == 2 and b[0] in a and lo - 3 <= len(a) <= hi - 3
  sort = SIMPLE_TASKS["sort"](spec)
  for inputs, outputs in _draw(sort):
    a, b = _args(sort, inputs)
    assert set(a) <= set(b) and lo // 2 <= len(b) <= (hi - 1) // 2 and len(a) >= len(b)
    assert sorted(outputs.tolist()) == sorted(a)
  for name in ("delete", "search"):
    task = SIMPLE_TASKS[name](spec)
    for inputs, _ in _draw(task):
      a, b = _args(task, inputs)
      assert len(b) >= 1


def test_longest_word_structure():
  task = SIMPLE_TASKS["longest_word"](SPECS["t5"])
  divider = SPECS["t5"].extra_id(1)
  counts = []
  for inputs, outputs in _draw(task):
    (x,) = _args(task, inputs)
    words = " ".join(map(str, x)).split(f" {divider} ") if x[0] != divider else None
    assert words is not None and all(words)  # No empty word, no leading/trailing divider.
    counts.append(len(words))
    longest = max(len(w.split()) for w in words)
    assert len(outputs) == longest
  assert 1 <= min(counts) and max(counts) <= 110 and max(counts) > 50


def _release_runs_law(n, alphabet, shuffle):
  """Exact law of the release's set/deduplicate input for length n (enumeration)."""
  law = collections.Counter()
  for k in range(1, n + 1):
    for cuts in itertools.combinations(range(1, n), k - 1):
      sizes = np.diff((0,) + cuts + (n,))
      extra = sizes - 1
      p_sizes = (math.factorial(n - k) / math.prod(math.factorial(e) for e in extra)
                 * k ** -(n - k))
      for tokens in itertools.product(alphabet, repeat=k):
        seq = [t for t, s in zip(tokens, sizes) for _ in range(s)]
        p = p_sizes / n / len(alphabet) ** k
        if shuffle:
          for perm in itertools.permutations(range(n)):
            law[tuple(seq[i] for i in perm)] += p / math.factorial(n)
        else:
          law[tuple(seq)] += p
  return law


def _release_count_law(m, alphabet):
  law = collections.Counter()
  for q in alphabet:
    for c in range(m + 1):
      for rest in itertools.product(alphabet, repeat=m - c):
        seq = [q] * c + list(rest)
        p = 1 / len(alphabet) / (m + 1) / len(alphabet) ** (m - c) / math.factorial(m)
        for perm in itertools.permutations(range(m)):
          law[(tuple(seq[i] for i in perm), q)] += p
  return law


def _assert_matches_law(samples, law):
  assert abs(sum(law.values()) - 1) < 1e-9
  freq = collections.Counter(samples)
  assert set(freq) <= set(law)
  n = len(samples)
  for outcome, p in law.items():
    assert abs(freq[outcome] / n - p) < 5 * math.sqrt(p * (1 - p) / n) + 1e-3, outcome


@pytest.mark.parametrize("name,shuffle", [("set", True), ("deduplicate", False)])
def test_run_tasks_follow_the_release_law_exactly(name, shuffle):
  alphabet = [40, 41]
  task = SIMPLE_TASKS[name](SPECS["byte"], length_range=(4, 4), alphabet=alphabet)
  samples = [tuple(_args(task, i)[0]) for i, _ in _draw(task, blocks=40)]
  _assert_matches_law(samples, _release_runs_law(4, alphabet, shuffle))


def test_count_follows_the_release_law_exactly():
  alphabet = [40, 41]
  task = SIMPLE_TASKS["count"](SPECS["byte"], length_range=(5, 5), alphabet=alphabet)
  samples = []
  for inputs, _ in _draw(task, blocks=40):
    a, b = _args(task, inputs)
    samples.append((tuple(a), b[0]))
  _assert_matches_law(samples, _release_count_law(3, alphabet))


def test_set_number_of_runs_is_uniform():
  task = SIMPLE_TASKS["set"](SPECS["t5"], length_range=(20, 20))
  sizes = collections.Counter(len(o) for _, o in _draw(task, blocks=20))
  n = sum(sizes.values())
  # With 31 998 symbols the distinct count is almost always k ~ U[1, 20].
  for k in range(1, 21):
    assert abs(sizes[k] / n - 1 / 20) < 0.02, k


def test_alphabet_knob_restricts_tokens():
  for name in ("identity", "sort", "count", "delete", "union"):
    alphabet = list(range(100, 230, 1 if name == "union" else 13))  # Union pools need 109 ids.
    task = SIMPLE_TASKS[name](SPECS["t5"], alphabet=alphabet)
    for inputs, _ in _draw(task):
      assert set(t for a in _args(task, inputs) for t in a) <= set(alphabet)


def test_bad_knobs_are_rejected():
  spec = SPECS["byte"]
  with pytest.raises(ValueError, match="length_range"):
    SIMPLE_TASKS["count"](spec, length_range=(2, 20))
  with pytest.raises(ValueError, match="alphabet"):
    SIMPLE_TASKS["union"](spec, alphabet=[5, 6, 7])
  with pytest.raises(ValueError, match="distinct"):
    SIMPLE_TASKS["identity"](spec, alphabet=[5, 5])
  with pytest.raises(ValueError, match="separator ids"):
    SIMPLE_TASKS["identity"](spec, alphabet=[5, spec.extra_id(2)])
  with pytest.raises(ValueError, match="max_words"):
    SIMPLE_TASKS["longest_word"](spec, max_words=200)
