"""LIME's structure laws (SPEC §2.1), the `lime` mixture's rates, and the nesting language's T5
span corruption (SPEC §2.3).

Chi-square tests at significance ALPHA = 1e-4 at fixed seeds (false-alarm rate 1e-4 per test).
With the release's settings no LIME example exceeds 220 items (header ≤ 53, pattern ≤ 29,
result ≤ 99, substitution ≤ 60), so the length rejection never acts and the laws below are exact:
  2n variable occurrences, n ~ U[3, 5]; p ~ U[5, 19] math symbols in the pattern; string lengths
  k ~ U[2, 8]; |U'| = u given n with P = C(n, u)·S(2n, u)·u! / n^(2n) (S: Stirling numbers of the
  second kind); string symbols uniform over lower + math (44), pattern math symbols uniform over
  the 20 math symbols; U' in the order CPython's list(set(draws)) gives, where, given the set S of
  used variables, the draws' first-occurrence order is a uniform permutation of S.
"""

from __future__ import annotations

import collections
import importlib
import itertools
import math

import numpy as np
import pytest
import seqio
from scipy import stats

from synthetic_pretraining.generators import base
from synthetic_pretraining.generators import lime
from synthetic_pretraining.generators import registry
from synthetic_pretraining.vocab_spec import VocabSpec
from tests.generators.helpers import t5_like_spec

ALPHA = 1e-4
N_EXAMPLES = 3000


def _pvalue(observed: dict, probabilities: dict) -> float:
  assert set(observed) <= set(probabilities), set(observed) - set(probabilities)
  n = sum(observed.values())
  keys = sorted(probabilities)
  return float(stats.chisquare([observed.get(k, 0) for k in keys],
                               [n * probabilities[k] for k in keys]).pvalue)


def _stirling2(n: int, k: int) -> int:
  return sum((-1) ** j * math.comb(k, j) * (k - j) ** n for j in range(k + 1)) // math.factorial(k)


@pytest.fixture(scope="module")
def parsed():
  task = lime.LimeTask(t5_like_spec(), "deduct")
  rng = np.random.default_rng(7)
  examples = [e for _ in range(N_EXAMPLES // 500) for e in task.sample_block(rng, 500)]
  return task, [lime.parse_example("deduct", i, o, task.symbols) for i, o in examples]


def test_counts_follow_the_release_laws(parsed):
  _, examples = parsed
  occurrences = collections.Counter()
  maths = collections.Counter()
  lengths = collections.Counter()
  used = collections.Counter()
  for ex in examples:
    variables = [t for t in ex.pattern if t in ex.substitution]
    n = len(variables) // 2
    assert len(variables) == 2 * n
    occurrences[n] += 1
    maths[len(ex.pattern) - len(variables)] += 1
    lengths.update(len(s) for s in ex.substitution.values())
    used[n, len(ex.uppers)] += 1
  assert _pvalue(occurrences, {n: 1 / 3 for n in (3, 4, 5)}) > ALPHA
  assert _pvalue(maths, {p: 1 / 15 for p in range(5, 20)}) > ALPHA
  assert _pvalue(lengths, {k: 1 / 7 for k in range(2, 9)}) > ALPHA
  law = {(n, u): math.comb(n, u) * _stirling2(2 * n, u) * math.factorial(u) / n ** (2 * n) / 3
         for n in (3, 4, 5) for u in range(1, n + 1)}
  assert abs(sum(law.values()) - 1) < 1e-12
  assert _pvalue(used, law) > ALPHA


def test_symbols_are_uniform_over_their_groups(parsed):
  _, examples = parsed
  string_positions = collections.Counter()
  math_positions = collections.Counter()
  for ex in examples:
    lower_math = ex.lowers + ex.maths
    for s in ex.substitution.values():
      string_positions.update(lower_math.index(t) for t in s)
    math_positions.update(ex.maths.index(t) for t in ex.pattern if t not in ex.substitution)
  assert _pvalue(string_positions, {i: 1 / 44 for i in range(44)}) > ALPHA
  assert _pvalue(math_positions, {i: 1 / 20 for i in range(20)}) > ALPHA


def _cpython_orders(variables) -> collections.Counter:
  """Law of list(set(draws)) given the used set: each insertion order equally likely."""
  orders = collections.Counter(tuple(list(set(p))) for p in itertools.permutations(variables))
  total = sum(orders.values())
  return collections.Counter({k: v / total for k, v in orders.items()})


def test_variable_order_is_cpythons_list_of_set(parsed):
  """Every U' is an order CPython's list(set(...)) can give for its set, and the orders follow that
  law: the count of U' equal to list(set(sorted(S))) matches its expectation (z-test), which a
  sorted, first-in-pattern or first-drawn order would fail."""
  _, examples = parsed
  hits, expected, variance, informative = 0, 0.0, 0.0, 0
  for ex in examples:
    law = _cpython_orders(ex.uppers)
    assert tuple(ex.uppers) in law, ex.uppers
    p = law[tuple(list(set(sorted(ex.uppers))))]
    informative += p < 1
    hits += tuple(ex.uppers) == tuple(list(set(sorted(ex.uppers))))
    expected += p
    variance += p * (1 - p)
  assert informative > len(examples) // 4  # Many sets have several possible orders.
  z = (hits - expected) / math.sqrt(variance)
  assert abs(z) < stats.norm.isf(ALPHA / 2), (hits, expected, z)
  # Power: "sorted insertion" would put every example on that order.
  z_sorted = (len(examples) - expected) / math.sqrt(variance)
  assert abs(z_sorted) > stats.norm.isf(ALPHA / 2)


def _classify(outputs, uppers, symbols):
  if len(outputs) > 1 and outputs[1] == symbols[lime.COLON]:
    return "abduct"  # Output = substitution text "u : [ ... ]".
  return "induct" if set(outputs) & set(uppers) else "deduct"  # Pattern holds variables.


@pytest.fixture(scope="module")
def byte_tasks():
  module = importlib.import_module("synthetic_pretraining.tasks")
  module.register_all(seqio.ByteVocabulary(extra_ids=100))
  return module


def test_lime_mixture_has_equal_rates(byte_tasks):
  del byte_tasks
  mixture = seqio.get_mixture_or_task("lime")
  names = sorted(t.name for t in mixture.tasks)
  assert names == ["abduct", "deduct", "induct"]
  rates = {name: mixture.get_rate(seqio.get_mixture_or_task(name)) for name in names}
  assert len(set(rates.values())) == 1 and rates["induct"] > 0
  symbols = lime.LimeTask(VocabSpec.byte(), "induct").symbols
  ds = mixture.get_dataset({"inputs": 256, "targets": 256}, split="train", shuffle=True, seed=5)
  modes = collections.Counter()
  for ex in ds.take(900).as_numpy_iterator():
    inputs, outputs = ex["inputs"].tolist()[:-1], ex["targets"].tolist()[:-1]  # EOS dropped.
    uppers = inputs[1:inputs.index(symbols[lime.LOWER])]
    modes[_classify(outputs, uppers, symbols)] += 1
  assert _pvalue(modes, {m: 1 / 3 for m in lime.MODES}) > ALPHA


def test_mode_classifier_is_right_on_generated_examples():
  spec = VocabSpec.byte()
  rng = np.random.default_rng(0)
  for mode in lime.MODES:
    task = lime.LimeTask(spec, mode)
    for inputs, outputs in task.sample_block(rng, 50):
      parts = lime.parse_example(mode, inputs, outputs, task.symbols)
      assert _classify(outputs.tolist(), parts.uppers, task.symbols) == mode


# -- nesting language: T5 span corruption ---------------------------------------------------------
def _reconstruct(inputs, targets, first_sentinel):
  """Original chunk from span-corrupted inputs/targets; also the noise span lengths."""
  is_sentinel = lambda t: t > first_sentinel - 100 and t <= first_sentinel
  spans_in, current = [], []
  sentinels_in = []
  for t in inputs:
    if is_sentinel(t):
      spans_in.append(current)
      sentinels_in.append(t)
      current = []
    else:
      current.append(t)
  tail_in = current
  noise, sentinels_out, current = [], [], None
  for t in targets:
    if is_sentinel(t):
      if current is not None:
        noise.append(current)
      sentinels_out.append(t)
      current = []
    else:
      current.append(t)
  if current is not None:
    noise.append(current)
  assert sentinels_in == list(range(first_sentinel, first_sentinel - len(sentinels_in), -1))
  assert sentinels_out[:len(sentinels_in)] == sentinels_in
  chunk = []
  for kept, dropped in zip(spans_in, noise):
    chunk += kept + dropped
  chunk += tail_in
  for dropped in noise[len(spans_in):]:
    chunk += dropped
  return chunk, [len(z) for z in noise if z]


def test_nesting_language_span_corruption(byte_tasks):
  del byte_tasks
  vocab = seqio.ByteVocabulary(extra_ids=100)
  first_sentinel = vocab.vocab_size - 1  # <extra_id_0>, then downwards.
  task = seqio.get_mixture_or_task("nesting_language")
  lengths = {"inputs": 128, "targets": 128}
  got = list(task.get_dataset(lengths, "train", shuffle=True, seed=4).take(40).as_numpy_iterator())
  generator = registry.get_task("nesting_language", VocabSpec.byte())
  stream = []
  for index in range(200):
    inputs, targets = base.example_at(generator, 4, 0, index)
    assert len(inputs) == 0
    stream += targets.tolist()
  chunks, span_lengths, noise_total, length_total = [], [], 0, 0
  for ex in got:
    assert ex["inputs"][-1] == 1 and ex["targets"][-1] == 1  # EOS after trim.
    assert len(ex["inputs"]) <= 128 and len(ex["targets"]) <= 128
    chunk, spans = _reconstruct(ex["inputs"].tolist()[:-1], ex["targets"].tolist()[:-1],
                                first_sentinel)
    # T5's random_spans_noise_mask: round(0.15 L) noise tokens (at least 1, at most L - 1) in
    # round(noise / 3) spans (at least 1).
    length = len(chunk)
    num_noise = min(max(int(round(length * 0.15)), 1), length - 1)
    assert sum(spans) == num_noise, (length, spans)
    assert len(spans) == max(int(round(num_noise / 3.0)), 1)
    chunks.append(chunk)
    span_lengths += spans
    noise_total += num_noise
    length_total += length
  # The targets reconstruct the sequence: the chunks, in order, are the generator's stream
  # (seed 4, shard 0) concatenated, as T5's reduce_concat_tokens + split_tokens cut it.
  joined = [t for c in chunks for t in c]
  assert joined == stream[:len(joined)]
  assert abs(noise_total / length_total - 0.15) < 0.01
  assert abs(np.mean(span_lengths) - 3.0) < 0.3
