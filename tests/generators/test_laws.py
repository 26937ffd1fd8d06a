"""The 18 simple tasks' sampling laws against SPEC §1.2, by exact enumeration.

Each task's sampler is re-stated below from SPEC §1.2 (and the release's generalisation of its
constants to any length range: count m ~ U[min-2, max-2], replace m ~ U[min-3, max-3], sort
o ~ U[int(min/2), int((max-1)/2)], set operations T ~ U[min-1, max-1], longest_word W ~ U[1, max//2],
">= 1 occurrence" q ~ U[1, int((max-1)/3)]) as a probabilistic program over explicit random
choices. `exact_law` enumerates every branch of the program (whole-sample length rejection =
conditioning on acceptance; the "no occurrence" sampler's re-draw loop = conditioning inside that
sampler), giving the exact probability of every input. On a small alphabet and length range, the
generator's inputs at a fixed seed are then compared with that law by a chi-square
goodness-of-fit test at significance ALPHA = 1e-4 (cells with expected count < 5 pooled); an input
outside the law's support fails at once. False-alarm rate: 1e-4 per task, < 0.2 % for the file.
"""

from __future__ import annotations

import collections
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from synthetic_pretraining.generators import simple_functions as F
from synthetic_pretraining.generators.simple import SIMPLE_TASKS
from synthetic_pretraining.vocab_spec import VocabSpec

ALPHA = 1e-4
SPEC = VocabSpec.byte()
WORD_DIVIDER = SPEC.extra_id(F.WORD_DIVIDER_EXTRA_ID)


class Reject(Exception):
  """The sample's total length is outside the length range: the release draws again."""


class Chooser:
  """Random choices of one branch of a program; `exact_law` walks every branch."""

  def __init__(self, prefix):
    self.prefix, self.position, self.probability = prefix, 0, 1.0
    self.weights: list[list[float]] = []

  def pick(self, weights) -> int:
    i = self.prefix[self.position] if self.position < len(self.prefix) else 0
    self.weights.append(list(weights))
    self.position += 1
    self.probability *= weights[i]
    return i

  # -- the release's random calls --------------------------------------------------------------
  def randint(self, lo, hi):  # random.randint: both ends included
    n = hi - lo + 1
    assert n >= 1, (lo, hi)
    return lo + self.pick([1 / n] * n)

  def choices(self, population, k):  # random.choices: k draws with replacement
    return [population[self.pick([1 / len(population)] * len(population))] for _ in range(k)]

  def shuffle(self, items):  # random.shuffle: a uniform permutation
    items, out = list(items), []
    while items:
      out.append(items.pop(self.pick([1 / len(items)] * len(items))))
    return out

  def combination(self, population, k):  # set(random.sample(population, k))
    combos = list(itertools.combinations(population, k))
    return combos[self.pick([1 / len(combos)] * len(combos))]

  def multinomial(self, n, k):  # numpy multinomial(n, [1/k] * k)
    outcomes = [c for c in itertools.product(range(n + 1), repeat=k) if sum(c) == n]
    weights = [math.factorial(n) / math.prod(math.factorial(x) for x in c) / k ** n
               for c in outcomes]
    return list(outcomes[self.pick(weights)])

  def bernoulli(self, p):
    return self.pick([1 - p, p]) == 1

  def from_law(self, law):  # A draw from an already enumerated (conditioned) law.
    outcomes = sorted(law)
    return outcomes[self.pick([law[o] for o in outcomes])]


def exact_law(program) -> dict:
  """{outcome: probability} of `program(chooser)`, conditioned on not raising Reject."""
  law: dict = collections.defaultdict(float)
  stack = [[]]
  while stack:
    prefix = stack.pop()
    chooser = Chooser(prefix)
    try:
      outcome = program(chooser)
    except Reject:
      outcome = None
    path = prefix + [0] * (len(chooser.weights) - len(prefix))
    for position in range(len(prefix), len(chooser.weights)):
      for j in range(1, len(chooser.weights[position])):
        if chooser.weights[position][j] > 0:
          stack.append(path[:position] + [j])
    if outcome is not None and chooser.probability > 0:
      law[outcome] += chooser.probability
  total = sum(law.values())
  assert total > 0
  return {k: v / total for k, v in law.items()}


# -- SPEC §1.2 samplers ----------------------------------------------------------------------------
def _check_total(total, length_range):
  if not length_range[0] <= total <= length_range[1]:
    raise Reject


def unary_random(c, lo, hi, alphabet):
  n = c.randint(lo, hi)
  return (tuple(c.choices(alphabet, n)),)


def runs(c, lo, hi, alphabet, shuffle):  # set (shuffled) / deduplicate (runs in order)
  n = c.randint(lo, hi)
  k = c.randint(1, n)
  sizes = [1 + e for e in c.multinomial(n - k, k)]
  tokens = c.choices(alphabet, k)
  seq = [t for t, s in zip(tokens, sizes) for _ in range(s)]
  return (tuple(c.shuffle(seq) if shuffle else seq),)


def longest_word(c, lo, hi, alphabet):
  words = c.randint(1, hi // 2)
  letters = c.randint(max(lo - (words - 1), words), hi - (words - 1))
  sizes = [1 + e for e in c.multinomial(letters - words, words)]
  out = []
  for i, size in enumerate(sizes):
    out += c.choices(alphabet, size) + ([WORD_DIVIDER] if i < words - 1 else [])
  return (tuple(out),)


def count(c, lo, hi, alphabet):
  m = c.randint(lo - 2, hi - 2)
  query = c.choices(alphabet, 1)[0]
  copies = c.randint(0, m)
  seq = c.shuffle([query] * copies + c.choices(alphabet, m - copies))
  return (tuple(seq), (query,))


def _no_occurrence_tokens(c, s, q, alphabet, cache):
  """Sequence and query of fixed lengths, re-drawn while str(query)[1:-1] is in str(seq)."""
  if (s, q) not in cache:
    def draw(c2):
      query, seq = c2.choices(alphabet, q), c2.choices(alphabet, s)
      if str(query)[1:-1] in str(seq):
        raise Reject
      return tuple(seq), tuple(query)
    cache[s, q] = exact_law(draw)
  return c.from_law(cache[s, q])


def occurrence(c, lo, hi, alphabet, p_occurrence, cache):  # search / delete
  if c.bernoulli(p_occurrence):  # ">= 1 occurrence"
    q = c.randint(1, int((hi - 1) / 3))
    s = c.randint(2 * q, hi - 1 - q)
    _check_total(s + 1 + q, (lo, hi))
    query = c.choices(alphabet, q)
    k = c.randint(1, s // q)
    seq = []
    for i, size in enumerate(c.multinomial(s - k * q, k + 1)):
      seq += c.choices(alphabet, size) + (query if i < k else [])
    return tuple(seq), tuple(query)
  if c.bernoulli(0.01):  # "no occurrence", query longer than the sequence
    q = c.randint(lo + 1, hi)
    s = c.randint(0, q - 1)
    _check_total(s + 1 + q, (lo, hi))
    query = c.choices(alphabet, q)
    return tuple(c.choices(alphabet, s)), tuple(query)
  s = c.randint(lo, hi)
  q = c.randint(lo, s)
  _check_total(s + 1 + q, (lo, hi))
  return _no_occurrence_tokens(c, s, q, alphabet, cache)


def sort(c, lo, hi, alphabet):
  o = c.randint(int(lo / 2), int((hi - 1) / 2))
  order = c.choices(alphabet, o)
  m = c.randint(o, hi - 1 - o)
  _check_total(m + 1 + o, (lo, hi))
  sizes = [1 + e for e in c.multinomial(m - o, o)]
  run_tokens = c.choices(order, o)
  seq = [t for t, s in zip(run_tokens, sizes) for _ in range(s)]
  return tuple(c.shuffle(seq)), tuple(order)


def replace(c, lo, hi, alphabet):
  m = c.randint(lo - 3, hi - 3)
  seq = c.choices(alphabet, m)
  key = c.choices(sorted(set(seq)), 1)[0]  # random.sample(list(set(seq)), 1)
  value = c.choices(alphabet, 1)[0]
  return tuple(seq), (key, value)


def set_operation(c, lo, hi, alphabet):
  total = c.randint(lo - 1, hi - 1)
  a_len = c.randint(0, total)
  pool = list(c.combination(alphabet, total // 2))
  return tuple(c.choices(pool, a_len)), tuple(c.choices(pool, total - a_len))


# (task, length_range, alphabet, reference program, samples)
A2, A3 = [40, 41], [4, 40, 41]  # [4, 40, 41]: "4" is a digit-substring of "40" and "41".
CASES = {
    "identity": ((1, 3), A3, lambda c: unary_random(c, 1, 3, A3)),
    "reverse": ((1, 3), A3, lambda c: unary_random(c, 1, 3, A3)),
    "duplicate": ((2, 4), A2, lambda c: unary_random(c, 2, 4, A2)),
    "first_token": ((1, 3), A3, lambda c: unary_random(c, 1, 3, A3)),
    "last_token": ((1, 3), A3, lambda c: unary_random(c, 1, 3, A3)),
    "length": ((2, 4), A2, lambda c: unary_random(c, 2, 4, A2)),
    "set": ((1, 4), A2, lambda c: runs(c, 1, 4, A2, shuffle=True)),
    "deduplicate": ((1, 4), A2, lambda c: runs(c, 1, 4, A2, shuffle=False)),
    "longest_word": ((2, 6), A2, lambda c: longest_word(c, 2, 6, A2)),
    "count": ((3, 5), A2, lambda c: count(c, 3, 5, A2)),
    "search": ((3, 7), A3, lambda c, cache={}: occurrence(c, 3, 7, A3, 0.5, cache)),
    "delete": ((3, 7), A3, lambda c, cache={}: occurrence(c, 3, 7, A3, 0.75, cache)),
    "sort": ((2, 6), A2, lambda c: sort(c, 2, 6, A2)),
    "replace": ((4, 7), A3, lambda c: replace(c, 4, 7, A3)),
    "union": ((3, 6), A3, lambda c: set_operation(c, 3, 6, A3)),
    "intersect": ((3, 6), A3, lambda c: set_operation(c, 3, 6, A3)),
    "set1_minus_set2": ((3, 6), A3, lambda c: set_operation(c, 3, 6, A3)),
    "set2_minus_set1": ((3, 6), A3, lambda c: set_operation(c, 3, 6, A3)),
}
SAMPLES = 30_000


def chi_square_pvalue(samples, law) -> float:
  """Goodness of fit of `samples` to `law`; cells with expected count < 5 pooled into one."""
  n = len(samples)
  freq = collections.Counter(samples)
  outside = set(freq) - set(law)
  assert not outside, f"inputs the law cannot produce, e.g. {sorted(outside)[:3]}"
  observed, expected, pooled_o, pooled_e = [], [], 0, 0.0
  for outcome, p in law.items():
    if n * p >= 5:
      observed.append(freq[outcome])
      expected.append(n * p)
    else:
      pooled_o += freq[outcome]
      pooled_e += n * p
  if pooled_e > 0:
    observed.append(pooled_o)
    expected.append(pooled_e)
  assert len(observed) >= 2
  return float(stats.chisquare(observed, expected).pvalue)


def generator_inputs(name, length_range, alphabet, n=SAMPLES, seed=1234, **knobs):
  task = SIMPLE_TASKS[name](SPEC, length_range=length_range, alphabet=alphabet, **knobs)
  inputs, outputs = task.sample_ragged(np.random.default_rng(seed), n)
  rows = inputs.rows()
  out_rows = outputs.rows()
  samples = []
  for i in range(n):
    args = task.split_input(rows[i].tolist())
    if i < 500:  # The output is the SPEC's function of the input (checked on a few).
      assert out_rows[i].tolist() == task.output(args)
    samples.append(tuple(tuple(a) for a in args))
  return samples


@pytest.mark.parametrize("name", F.SIMPLE_TASK_NAMES)
def test_inputs_follow_the_spec_law(name):
  length_range, alphabet, program = CASES[name]
  law = exact_law(program)
  assert abs(sum(law.values()) - 1) < 1e-9
  samples = generator_inputs(name, length_range, alphabet)
  pvalue = chi_square_pvalue(samples, law)
  assert pvalue > ALPHA, (name, pvalue, len(law))


@pytest.mark.parametrize("name,wrong", [
    ("identity", lambda c: unary_random(c, 1, 2, A3)),  # U[1,2] instead of U[1,3]
    ("set", lambda c: runs(c, 1, 4, A2, shuffle=False)),  # no shuffle
    ("count", lambda c: count(c, 3, 4, A2)),  # m range too small
    ("search", lambda c, cache={}: occurrence(c, 3, 7, A3, 0.75, cache)),  # delete's 75 %
    ("sort", lambda c: sort(c, 2, 5, A2)),
    ("replace", lambda c: (lambda s, kv: (s, kv))(*replace(c, 4, 6, A3))),
    ("union", lambda c: (lambda a, b: (a, b))(*set_operation(c, 3, 5, A3))),
    ("longest_word", lambda c: longest_word(c, 2, 5, A2)),
])
def test_the_test_rejects_a_wrong_law(name, wrong):
  """Power: the same samples are rejected under a neighbouring wrong law (or leave its support)."""
  length_range, alphabet, _ = CASES[name]
  samples = generator_inputs(name, length_range, alphabet)
  try:
    pvalue = chi_square_pvalue(samples, exact_law(wrong))
  except AssertionError:  # Inputs outside the wrong law's support: rejected too.
    return
  assert pvalue < ALPHA, (name, pvalue)


def test_no_occurrence_sampler_uses_the_release_string_test():
  """With ids 4, 40, 41 the release's `str(b)[1:-1] in str(a)` also rejects digit matches
  ("4" inside "40"); a plain sub-list test would not. The law above encodes the string test."""
  law = exact_law(lambda c: _no_occurrence_tokens(c, 3, 3, A3, {}))
  assert ((40, 41, 4), (4, 4, 4)) in law  # "4, 4, 4" is not in "40, 41, 4": allowed.
  assert ((40, 4, 40), (40, 4, 4)) not in law  # "40, 4, 4" is in "40, 4, 40": a digit match.
  assert ((40, 4, 40), (40, 4, 40)) not in law  # A true occurrence.
  assert len(law) == 27 * 27 - 27 - sum(  # Equal pairs and the digit matches are excluded.
      1 for a in itertools.product(A3, repeat=3) for b in itertools.product(A3, repeat=3)
      if a != b and str(list(b))[1:-1] in str(list(a)))


# -- the release's default length range (10, 220), all byte symbols: laws of the lengths ---------
def _lengths_occurrence(c, lo, hi, p_occurrence):
  if c.bernoulli(p_occurrence):
    q = c.randint(1, int((hi - 1) / 3))
    s = c.randint(2 * q, hi - 1 - q)
  elif c.bernoulli(0.01):
    q = c.randint(lo + 1, hi)
    s = c.randint(0, q - 1)
  else:
    s = c.randint(lo, hi)
    q = c.randint(lo, s)
  _check_total(s + 1 + q, (lo, hi))
  return s, q


def _lengths_sort(c, lo, hi):
  o = c.randint(int(lo / 2), int((hi - 1) / 2))
  m = c.randint(o, hi - 1 - o)
  _check_total(m + 1 + o, (lo, hi))
  return m, o


def _lengths_longest_word(c, lo, hi):
  words = c.randint(1, hi // 2)
  return words, c.randint(max(lo - (words - 1), words), hi - (words - 1))


def _lengths_set_operation(c, lo, hi):
  total = c.randint(lo - 1, hi - 1)
  a_len = c.randint(0, total)
  return a_len, total - a_len


LO, HI = 10, 220
LENGTH_LAWS = {
    **{name: lambda c: (c.randint(LO, HI),) for name in (
        "identity", "reverse", "duplicate", "first_token", "last_token", "length", "set",
        "deduplicate")},
    "longest_word": lambda c: _lengths_longest_word(c, LO, HI),
    "count": lambda c: (c.randint(LO - 2, HI - 2), 1),
    "search": lambda c: _lengths_occurrence(c, LO, HI, 0.5),
    "delete": lambda c: _lengths_occurrence(c, LO, HI, 0.75),
    "sort": lambda c: _lengths_sort(c, LO, HI),
    "replace": lambda c: (c.randint(LO - 3, HI - 3), 2),
    **{name: lambda c: _lengths_set_operation(c, LO, HI) for name in (
        "union", "intersect", "set1_minus_set2", "set2_minus_set1")},
}


def _observed_lengths(name, args):
  if name == "longest_word":
    (x,) = args
    words = x.count(WORD_DIVIDER) + 1
    return words, len(x) - (words - 1)
  return tuple(len(a) for a in args)


@pytest.mark.parametrize("name", F.SIMPLE_TASK_NAMES)
def test_lengths_follow_the_spec_law_at_the_release_range(name):
  """E.g. U[10, 100] for U[10, 220], a wrong occurrence ratio or a wrong (o, m) law fails here."""
  law = exact_law(LENGTH_LAWS[name])
  task = SIMPLE_TASKS[name](SPEC)  # Default length range (10, 220), every byte symbol.
  assert task.length_range == (LO, HI)
  inputs, _ = task.sample_ragged(np.random.default_rng(99), 20_000)
  samples = [_observed_lengths(name, task.split_input(row.tolist())) for row in inputs.rows()]
  pvalue = chi_square_pvalue(samples, law)
  assert pvalue > ALPHA, (name, pvalue)


def test_length_law_test_rejects_a_shorter_range():
  task = SIMPLE_TASKS["identity"](SPEC)
  inputs, _ = task.sample_ragged(np.random.default_rng(99), 20_000)
  samples = [(len(task.split_input(row.tolist())[0]),) for row in inputs.rows()]
  assert chi_square_pvalue(samples, exact_law(LENGTH_LAWS["identity"])) > ALPHA
  with pytest.raises(AssertionError, match="cannot produce"):
    chi_square_pvalue(samples, exact_law(lambda c: (c.randint(LO, 100),)))
  # Same support, wrong shape: a triangular law on [10, 220] is rejected by the chi-square.
  triangular = exact_law(lambda c: (max(c.randint(LO, HI), c.randint(LO, HI)),))
  assert chi_square_pvalue(samples, triangular) < ALPHA
