"""Nonsense summarisation (Krishna et al. 2021, "ourtasks-nonsense"), as used by the paper.

Krishna, Bigham & Lipton (2021), "Does pretraining for summarization require knowledge transfer?"
pre-train on documents of random nonsense words whose "summaries" come from 16 elementary
summarisation subtasks. The paper loads their data files (`article\\tsummary`, T5-tokenised); the
generator is reproduced in the release's `summarization_tasks_datagen/ourtasks.py`. This module
re-implements it (see SPEC §2.2):

* Vocabulary: `vocab_size` (5,000) nonsense words; word i is i written in base 26 with letters a–z,
  least-significant letter first, on the fewest letters that give distinct words (3 for 5,000):
  aaa, baa, …, zaa, aba, ….
* Document: U[7, 13] sentences (10 ± 3), each of U[5, 15] iid uniform words (10 ± 5) followed by
  the word ".".
* For each document `subtasks_per_doc` (3) distinct subtasks are drawn uniformly without replacement
  from the 16 below. All of their input modifications are applied in the drawn order; then every
  subtask reads the *final* article and their summary lines are concatenated in the same order (so a
  copied sentence may carry words inserted by another subtask, exactly as in the release).
* Inserted keywords are unique per subtask: `__<id>__<keyword>__` (e.g. `__d3__keyword_7__`).
  "Replaceable" word positions of a sentence are all but its last word (normally the "."), minus
  words containing "_" (earlier insertions). Sentence choices are distinct, random and sorted.

Subtasks (release id, name): d3 CopyKeywordOneSentence, d4 CopyKeywordMultipleSentences,
d5 CopyKeywordMultipleSentencesShuffled, d6 CopyKeywordMultipleSentencesSorted, d7 CopyQuoted,
d8 CopyBulleted, d10 ClassifyKeyword, d11 ReplaceClassKeyword, d12 MajorityKeyword,
d13 TopicSegregation, d14 ThresholdNumber, d16 LargestNumber, d18 ParaphraseWords, d19 JoinClauses,
d20 BreakClauses, d21 TruncateSentence. Each is a `Subtask` class with `modify(lines, rng)` and
`summarize(lines, rng)`; `apply_subtask` runs one alone.

What the release leaves open, and what we chose:
* How `article_lines` / `summary_lines` became one `article\\tsummary` line is not in the release
  (the data files came from Krishna et al.). We join lines with a single space (sentences already
  end in " ."); `line_separator` makes this configurable (e.g. "\\n" for a ROUGE-Lsum layout).
* The release draws with NumPy's global, unseeded RNG; we draw from the caller's
  `np.random.Generator` (deterministic per example address), so individual documents differ but the
  distribution is the same.
* The release asserts (and would crash) when a chosen sentence has no room left for an insertion;
  with the default ranges this is vanishingly rare. We redraw the whole document instead.
* The release's "replaceable" rule excludes the *last word*, which is "." except when a quotation
  closes after the full stop; we keep that rule as is.

`NonsenseSummaryTask` encodes article and summary with `spec.encode_fn` (the full text, nothing
dropped), like SeqIO tokenising the release's text files; `sample_text` gives the text for a SeqIO
task that tokenises itself.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Iterable, Sequence

import numpy as np

from synthetic_pretraining.generators.base import Example, SyntheticTask
from synthetic_pretraining.vocab_spec import VocabSpec

DEFAULT_VOCAB_SIZE = 5000
DEFAULT_NUM_SENTENCES_RANGE = (7, 13)   # 10 ± 3, inclusive.
DEFAULT_SENTENCE_LENGTH_RANGE = (5, 15)  # 10 ± 5 words before the final ".", inclusive.
DEFAULT_SUBTASKS_PER_DOC = 3
_MAX_ATTEMPTS = 1000

Lines = list[list[str]]  # A document as sentences of words; the last word is normally ".".


class NoRoomError(Exception):
  """A subtask found no place for its insertion; the caller redraws the document."""


def nonsense_vocabulary(size: int = DEFAULT_VOCAB_SIZE) -> list[str]:
  """The `size` nonsense words: base-26 letters, least-significant first (aaa, baa, …)."""
  if size < 2:
    raise ValueError(f"nonsense vocabulary size must be >= 2, got {size}")
  slots = 1
  while 26 ** slots < size:
    slots += 1
  words = []
  for i in range(size):
    letters = []
    for _ in range(slots):
      i, rem = divmod(i, 26)
      letters.append(chr(ord("a") + rem))
    words.append("".join(letters))
  return words


# -------------------------------------------------------------------------------------------------
# Randomness: numpy Generator calls cost microseconds each, and a document needs dozens of tiny
# draws, so we take uniforms from the Generator in bulk and turn them into the small draws.
class _Uniforms:
  """Small random draws from a numpy Generator, batched."""

  def __init__(self, rng: np.random.Generator, chunk: int = 64):
    self.rng = rng
    self._chunk = chunk
    self._buf: list[float] = []

  def _next(self) -> float:
    if not self._buf:
      self._buf = self.rng.random(self._chunk).tolist()
      self._buf.reverse()
    return self._buf.pop()

  def below(self, n: int) -> int:
    """Uniform integer in [0, n)."""
    if n <= 0:
      raise ValueError(f"cannot draw from an empty range (n={n})")
    return min(int(self._next() * n), n - 1)

  def between(self, low: int, high: int) -> int:
    """Uniform integer in [low, high] (both included)."""
    return low + self.below(high - low + 1)

  def choice(self, items: Sequence):
    return items[self.below(len(items))]

  def sample(self, items: Sequence, k: int) -> list:
    """`k` distinct items, in random order (partial Fisher–Yates)."""
    pool = list(items)
    if k > len(pool):
      raise NoRoomError(f"need {k} distinct items, only {len(pool)} available")
    for i in range(k):
      j = i + self.below(len(pool) - i)
      pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]

  def shuffle(self, items: list) -> None:
    for i in range(len(items) - 1, 0, -1):
      j = self.below(i + 1)
      items[i], items[j] = items[j], items[i]


def _as_uniforms(rng) -> _Uniforms:
  return rng if isinstance(rng, _Uniforms) else _Uniforms(rng)


# -------------------------------------------------------------------------------------------------
def generate_article(rng, vocabulary: Sequence[str],
                     num_sentences_range: tuple[int, int] = DEFAULT_NUM_SENTENCES_RANGE,
                     sentence_length_range: tuple[int, int] = DEFAULT_SENTENCE_LENGTH_RANGE
                     ) -> Lines:
  """A nonsense document: sentences of iid uniform words, each ending with the word "."."""
  u = _as_uniforms(rng)
  num_sentences = max(1, u.between(*num_sentences_range))
  lengths = [max(1, u.between(*sentence_length_range)) for _ in range(num_sentences)]
  ids = u.rng.integers(0, len(vocabulary), size=sum(lengths)).tolist()
  lines, start = [], 0
  for length in lengths:
    lines.append([vocabulary[i] for i in ids[start:start + length]] + ["."])
    start += length
  return lines


def replaceable_positions(words: Sequence[str]) -> list[int]:
  """Positions a subtask may overwrite: not the last word, no word already containing "_"."""
  return [i for i, w in enumerate(words[:-1]) if "_" not in w]


def _marked(subtask_id: str, keyword: str) -> str:
  return f"__{subtask_id}__{keyword}__"


class Subtask:
  """One summarisation subtask: an input modification and a summary read from the final article."""

  subtask_id: str = ""
  raw_keywords: tuple[str, ...] = ()

  def __init__(self):
    self.keywords: tuple[str, ...] = tuple(_marked(self.subtask_id, k) for k in self.raw_keywords)
    self._keyword_set = frozenset(self.keywords)

  @property
  def name(self) -> str:
    return type(self).__name__

  def modify(self, lines: Lines, rng) -> None:
    """Modifies `lines` in place."""
    raise NotImplementedError

  def summarize(self, lines: Lines, rng) -> list[str]:
    """Summary lines computed from the (final) modified article."""
    raise NotImplementedError

  # Helpers shared by the subtasks. ---------------------------------------------------------------
  def find(self, lines: Lines) -> list[tuple[int, list[str]]]:
    """(sentence index, this subtask's keywords in it in word order) for sentences that have any."""
    found = []
    for i, words in enumerate(lines):
      if self._keyword_set.isdisjoint(words):
        continue
      hits = [w for w in words if w in self._keyword_set]
      if hits:
        found.append((i, list(dict.fromkeys(hits))))
    return found

  @staticmethod
  def pick_sentences(lines: Lines, k: int, u: _Uniforms) -> list[int]:
    return sorted(u.sample(range(len(lines)), k))

  @staticmethod
  def overwrite(words: list[str], word: str, u: _Uniforms, below: int | None = None) -> None:
    """Writes `word` over a random replaceable position (optionally only positions < `below`)."""
    positions = replaceable_positions(words)
    if below is not None:
      positions = [p for p in positions if p < below]
    if not positions:
      raise NoRoomError("no replaceable word left in the chosen sentence")
    words[u.choice(positions)] = word

  @staticmethod
  def text(words: Iterable[str]) -> str:
    return " ".join(words)


class CopyKeywordOneSentence(Subtask):
  """d3: one sentence gets one of 10 keywords; the summary is that sentence."""

  subtask_id = "d3"
  raw_keywords = tuple(f"keyword_{i}" for i in range(10))

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    (i,) = self.pick_sentences(lines, 1, u)
    self.overwrite(lines[i], u.choice(self.keywords), u)

  def summarize(self, lines, rng):
    found = self.find(lines)
    assert len(found) == 1, found
    return [self.text(lines[found[0][0]])]


class CopyKeywordMultipleSentences(CopyKeywordOneSentence):
  """d4: three sentences get random keywords; the summary is those sentences in document order."""

  subtask_id = "d4"
  num_sentences = 3

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    for i in self.pick_sentences(lines, self.num_sentences, u):
      self.overwrite(lines[i], u.choice(self.keywords), u)

  def summarize(self, lines, rng):
    return [self.text(lines[i]) for i, _ in self.find(lines)]


class CopyKeywordMultipleSentencesShuffled(CopyKeywordMultipleSentences):
  """d5: as d4, but the copied sentences come in random order."""

  subtask_id = "d5"

  def summarize(self, lines, rng):
    out = super().summarize(lines, rng)
    _as_uniforms(rng).shuffle(out)
    return out


class CopyKeywordMultipleSentencesSorted(CopyKeywordMultipleSentences):
  """d6: three sentences get three distinct keywords; copied in keyword-name order."""

  subtask_id = "d6"

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    chosen = self.pick_sentences(lines, self.num_sentences, u)
    keywords = u.sample(self.keywords, self.num_sentences)
    for i, keyword in zip(chosen, keywords):
      self.overwrite(lines[i], keyword, u)

  def summarize(self, lines, rng):
    found = sorted(self.find(lines), key=lambda item: item[1][0])
    return [self.text(lines[i]) for i, _ in found]


class CopyQuoted(Subtask):
  """d7: quote marks around a random span of one sentence; the summary is the span (+ " .")."""

  subtask_id = "d7"
  raw_keywords = ("begin_quote", "end_quote")

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    (i,) = self.pick_sentences(lines, 1, u)
    words = lines[i]
    first = 0 if 0 in replaceable_positions(words) else 1
    begin = u.between(first, len(words) - 1)
    end = u.between(begin + 1, len(words))
    lines[i] = (words[:begin] + [self.keywords[0]] + words[begin:end] + [self.keywords[1]]
                + words[end:])

  def summarize(self, lines, rng):
    found = self.find(lines)
    assert len(found) == 1, found
    words = lines[found[0][0]]
    span = self.text(words[words.index(self.keywords[0]) + 1:words.index(self.keywords[1])])
    return [span if span.endswith(".") else span + " ."]


class CopyBulleted(Subtask):
  """d8: one sentence is prefixed with a bullet; the summary is that sentence without it."""

  subtask_id = "d8"
  raw_keywords = ("bullet",)

  def modify(self, lines, rng):
    (i,) = self.pick_sentences(lines, 1, _as_uniforms(rng))
    lines[i] = [self.keywords[0]] + lines[i]

  def summarize(self, lines, rng):
    found = self.find(lines)
    assert len(found) == 1, found
    words = lines[found[0][0]]
    assert words[0] == self.keywords[0], words
    return [self.text(words[1:])]


class ClassifyKeyword(CopyKeywordOneSentence):
  """d10: one of 10 keywords (0–4 positive, 5–9 negative); the summary states its polarity.

  The input modification is d3's (one sentence, one of keyword_0..9); only the summary differs.
  """

  subtask_id = "d10"

  def summarize(self, lines, rng):
    found = self.find(lines)
    assert len(found) == 1, found
    positive = self.keywords.index(found[0][1][0]) < 5
    return ["the keyword was positive ." if positive else "the keyword was negative ."]


class ReplaceClassKeyword(Subtask):
  """d11: one of 3×3 class keywords; the summary is its sentence with the keyword's class name."""

  subtask_id = "d11"
  num_classes = 3
  words_per_class = 3
  raw_keywords = tuple(f"class_{c}_kw_{k}" for c in range(3) for k in range(3))

  def __init__(self):
    super().__init__()
    self.class_names = tuple(_marked(self.subtask_id, f"class_{c}")
                             for c in range(self.num_classes))
    self.class_of = {kw: i // self.words_per_class for i, kw in enumerate(self.keywords)}

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    (i,) = self.pick_sentences(lines, 1, u)
    self.overwrite(lines[i], u.choice(self.keywords), u)

  def summarize(self, lines, rng):
    found = self.find(lines)
    assert len(found) == 1, found
    index, (keyword, *_) = found[0]
    name = self.class_names[self.class_of[keyword]]
    return [self.text(name if w == keyword else w for w in lines[index])]


class MajorityKeyword(Subtask):
  """d12: 3 or 5 sentences get keyword_1 or keyword_2; the summary names the more frequent one."""

  subtask_id = "d12"
  raw_keywords = ("keyword_1", "keyword_2")

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    count = 2 * u.between(1, 2) + 1
    for i in self.pick_sentences(lines, count, u):
      self.overwrite(lines[i], u.choice(self.keywords), u)

  def summarize(self, lines, rng):
    counts = collections.Counter(kw for _, kws in self.find(lines) for kw in kws)
    majority, _ = counts.most_common(1)[0]
    return [f"The keyword {self.keywords.index(majority) + 1} occurred more number of times ."]


class TopicSegregation(ReplaceClassKeyword):
  """d13: 2–5 sentences get class keywords; the summary lists each class's sentences under it."""

  subtask_id = "d13"

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    for i in self.pick_sentences(lines, u.between(2, 5), u):
      self.overwrite(lines[i], u.choice(self.keywords), u)

  def summarize(self, lines, rng):
    by_class = collections.defaultdict(list)
    for i, kws in self.find(lines):
      by_class[self.class_of[kws[0]]].append(i)
    out = []
    for c, name in enumerate(self.class_names):
      out.append(f"section {name}")
      out.extend(self.text(lines[i]) for i in sorted(by_class[c]))
    return out


class ThresholdNumber(Subtask):
  """d14: one number 0–99 is inserted; the summary says whether it is >= 50."""

  subtask_id = "d14"
  num_numbers = 100
  raw_keywords = tuple(str(x) for x in range(100))

  def __init__(self):
    super().__init__()
    self.value_of = {kw: i for i, kw in enumerate(self.keywords)}

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    (i,) = self.pick_sentences(lines, 1, u)
    self.overwrite(lines[i], u.choice(self.keywords), u)

  def summarize(self, lines, rng):
    found = self.find(lines)
    assert len(found) == 1, found
    if self.value_of[found[0][1][0]] >= self.num_numbers // 2:
      return ["the number was above or equal to threshold ."]
    return ["the number was below threshold ."]


class LargestNumber(ThresholdNumber):
  """d16: 1–4 distinct numbers in distinct sentences; the summary gives the largest."""

  subtask_id = "d16"

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    count = u.between(1, 4)
    chosen = self.pick_sentences(lines, count, u)
    for i, keyword in zip(chosen, u.sample(self.keywords, count)):
      self.overwrite(lines[i], keyword, u)

  def summarize(self, lines, rng):
    values = [self.value_of[kw] for _, kws in self.find(lines) for kw in kws]
    return [f"The largest number is {max(values)} ."]


class ParaphraseWords(Subtask):
  """d18: one of src_0..19 is inserted; the summary swaps it for a random target_<i>_<0..2>."""

  subtask_id = "d18"
  num_sources = 20
  variants_per_source = 3
  raw_keywords = tuple(kw for s in range(20)
                       for kw in [f"src_{s}"] + [f"target_{s}_{t}" for t in range(3)])

  def __init__(self):
    super().__init__()
    self.sources = tuple(_marked(self.subtask_id, f"src_{s}") for s in range(self.num_sources))
    self.targets = {src: tuple(_marked(self.subtask_id, f"target_{s}_{t}")
                               for t in range(self.variants_per_source))
                    for s, src in enumerate(self.sources)}

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    (i,) = self.pick_sentences(lines, 1, u)
    self.overwrite(lines[i], u.choice(self.sources), u)

  def summarize(self, lines, rng):
    u = _as_uniforms(rng)
    out = []
    for i, kws in self.find(lines):
      assert len(kws) == 1 and kws[0] in self.targets, kws
      words = list(lines[i])
      words[words.index(kws[0])] = u.choice(self.targets[kws[0]])
      out.append(self.text(words))
    return out


class JoinClauses(Subtask):
  """d19: three sentences get distinct joiners; the summary chains joiner + rest of each clause."""

  subtask_id = "d19"
  raw_keywords = tuple(f"join_{i}" for i in range(5))
  num_sentences = 3

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    chosen = self.pick_sentences(lines, self.num_sentences, u)
    for i, joiner in zip(chosen, u.sample(self.keywords, self.num_sentences)):
      # The joiner must leave at least one word between itself and the final word.
      self.overwrite(lines[i], joiner, u, below=len(lines[i]) - 2)

  def summarize(self, lines, rng):
    sentence = "The combined sentence is "
    for i, kws in self.find(lines):
      assert len(kws) == 1, kws
      words = lines[i]
      following = words[words.index(kws[0]) + 1:-1]
      sentence += kws[0] + " " + self.text(following) + " "
    return [sentence + "."]


class BreakClauses(Subtask):
  """d20: one sentence gets two distinct joiners; the summary splits it into two sentences."""

  subtask_id = "d20"
  raw_keywords = tuple(f"join_{i}" for i in range(5))

  def modify(self, lines, rng):
    u = _as_uniforms(rng)
    (i,) = self.pick_sentences(lines, 1, u)
    words = lines[i]
    first, second = u.sample(replaceable_positions(words), 2)
    joiners = u.sample(self.keywords, 2)
    words[first], words[second] = joiners

  def summarize(self, lines, rng):
    found = self.find(lines)
    assert len(found) == 1 and len(found[0][1]) == 2, found
    words = lines[found[0][0]]
    a, b = sorted(words.index(kw) for kw in found[0][1])
    prefix = words[:a]
    return [self.text(prefix + words[a:b] + ["."]),
            self.text(prefix + words[b:len(words) - 1] + ["."])]


class TruncateSentence(CopyKeywordOneSentence):
  """d21: a keyword is inserted in one sentence; the summary is the words before it + "."."""

  subtask_id = "d21"

  def summarize(self, lines, rng):
    found = self.find(lines)
    assert len(found) == 1, found
    words = lines[found[0][0]]
    return [self.text(words[:words.index(found[0][1][0])] + ["."])]


# The 16 subtasks of the release's `ourtasks-nonsense` run, in its order.
SUBTASK_CLASSES: tuple[type[Subtask], ...] = (
    CopyKeywordOneSentence, CopyKeywordMultipleSentences, CopyKeywordMultipleSentencesShuffled,
    CopyKeywordMultipleSentencesSorted, CopyQuoted, CopyBulleted, ClassifyKeyword,
    ReplaceClassKeyword, MajorityKeyword, TopicSegregation, ThresholdNumber, LargestNumber,
    ParaphraseWords, JoinClauses, BreakClauses, TruncateSentence)
SUBTASK_NAMES: tuple[str, ...] = tuple(c.__name__ for c in SUBTASK_CLASSES)
_SUBTASKS_BY_NAME = {c.__name__: c for c in SUBTASK_CLASSES}
# Sentences each subtask needs at most (for validating the document-size knobs).
_MAX_SENTENCES_NEEDED = {
    "MajorityKeyword": 5, "TopicSegregation": 5, "LargestNumber": 4, "JoinClauses": 3,
    "CopyKeywordMultipleSentences": 3, "CopyKeywordMultipleSentencesShuffled": 3,
    "CopyKeywordMultipleSentencesSorted": 3}


def get_subtask(name: str) -> Subtask:
  """A subtask instance by its release class name (e.g. "CopyQuoted")."""
  if name not in _SUBTASKS_BY_NAME:
    raise ValueError(f"unknown nonsense subtask {name!r}; expected one of {list(SUBTASK_NAMES)}")
  return _SUBTASKS_BY_NAME[name]()


def apply_subtask(name: str, lines: Lines, rng) -> list[str]:
  """Runs one subtask alone on `lines` (modified in place); returns its summary lines."""
  subtask = get_subtask(name)
  u = _as_uniforms(rng)
  subtask.modify(lines, u)
  return subtask.summarize(lines, u)


@dataclasses.dataclass(frozen=True)
class NonsenseDocument:
  """One generated document with everything a check needs."""

  original_lines: tuple[str, ...]   # Before any modification.
  article_lines: tuple[str, ...]    # After all modifications.
  subtasks: tuple[str, ...]         # Subtask names, in application order.
  summary_parts: tuple[tuple[str, ...], ...]  # Each subtask's summary lines, same order.
  line_separator: str = " "

  @property
  def summary_lines(self) -> tuple[str, ...]:
    return tuple(line for part in self.summary_parts for line in part)

  @property
  def article(self) -> str:
    return self.line_separator.join(self.article_lines)

  @property
  def summary(self) -> str:
    return self.line_separator.join(self.summary_lines)


class NonsenseSummaryGenerator:
  """Draws nonsense documents and their composite summaries (text level)."""

  def __init__(self, *, vocab_size: int = DEFAULT_VOCAB_SIZE,
               num_sentences_range: tuple[int, int] = DEFAULT_NUM_SENTENCES_RANGE,
               sentence_length_range: tuple[int, int] = DEFAULT_SENTENCE_LENGTH_RANGE,
               subtasks_per_doc: int = DEFAULT_SUBTASKS_PER_DOC,
               subtasks: Sequence[str] | None = None, line_separator: str = " "):
    names = tuple(subtasks) if subtasks is not None else SUBTASK_NAMES
    self._subtasks = [get_subtask(n) for n in names]
    if len(set(names)) != len(names):
      raise ValueError(f"nonsense subtasks must be distinct, got {list(names)}")
    if not 1 <= subtasks_per_doc <= len(names):
      raise ValueError(f"subtasks_per_doc must be in [1, {len(names)}] (the number of subtasks "
                       f"offered), got {subtasks_per_doc}")
    for label, (low, high) in (("num_sentences_range", num_sentences_range),
                               ("sentence_length_range", sentence_length_range)):
      if not 1 <= low <= high:
        raise ValueError(f"{label} must be (low, high) with 1 <= low <= high, got {(low, high)}")
    needed = max(_MAX_SENTENCES_NEEDED.get(n, 1) for n in names)
    if num_sentences_range[0] < needed:
      raise ValueError(f"num_sentences_range starts at {num_sentences_range[0]} but subtasks "
                       f"{list(names)} need documents of at least {needed} sentences")
    if sentence_length_range[1] < 2 and {"BreakClauses", "JoinClauses"} & set(names):
      raise ValueError("BreakClauses/JoinClauses need sentences of at least 2 words; "
                       f"sentence_length_range is {sentence_length_range}")
    self.vocabulary = nonsense_vocabulary(vocab_size)
    self.num_sentences_range = tuple(num_sentences_range)
    self.sentence_length_range = tuple(sentence_length_range)
    self.subtasks_per_doc = subtasks_per_doc
    self.subtask_names = names
    self.line_separator = line_separator

  def generate(self, rng: np.random.Generator) -> NonsenseDocument:
    """Draws one document; redraws it when a subtask finds no room for its insertion."""
    u = _as_uniforms(rng)
    for _ in range(_MAX_ATTEMPTS):
      lines = generate_article(u, self.vocabulary, self.num_sentences_range,
                               self.sentence_length_range)
      original = tuple(" ".join(words) for words in lines)
      chosen = u.sample(self._subtasks, self.subtasks_per_doc)
      try:
        for subtask in chosen:
          subtask.modify(lines, u)
      except NoRoomError:
        continue
      parts = tuple(tuple(subtask.summarize(lines, u)) for subtask in chosen)
      return NonsenseDocument(original_lines=original,
                              article_lines=tuple(" ".join(words) for words in lines),
                              subtasks=tuple(s.name for s in chosen), summary_parts=parts,
                              line_separator=self.line_separator)
    raise RuntimeError(f"no nonsense document after {_MAX_ATTEMPTS} attempts: sentences of "
                       f"{self.sentence_length_range} words leave no room for subtasks "
                       f"{list(self.subtask_names)}")

  def generate_document(self, rng: np.random.Generator) -> tuple[str, str]:
    """(article, summary) text."""
    doc = self.generate(rng)
    return doc.article, doc.summary


@functools.lru_cache(maxsize=1)
def _default_generator() -> NonsenseSummaryGenerator:
  return NonsenseSummaryGenerator()


def generate_document(rng: np.random.Generator) -> tuple[str, str]:
  """(article, summary) text of one document with the release's settings."""
  return _default_generator().generate_document(rng)


class NonsenseSummaryTask(SyntheticTask):
  """The paper's `nonsense_summary` pre-training task: (article ids, summary ids)."""

  name = "nonsense_summary"

  def __init__(self, spec: VocabSpec, *, vocab_size: int = DEFAULT_VOCAB_SIZE,
               num_sentences_range: tuple[int, int] = DEFAULT_NUM_SENTENCES_RANGE,
               sentence_length_range: tuple[int, int] = DEFAULT_SENTENCE_LENGTH_RANGE,
               subtasks_per_doc: int = DEFAULT_SUBTASKS_PER_DOC,
               subtasks: Sequence[str] | None = None, line_separator: str = " "):
    super().__init__(spec)
    self.generator = NonsenseSummaryGenerator(
        vocab_size=vocab_size, num_sentences_range=tuple(num_sentences_range),
        sentence_length_range=tuple(sentence_length_range), subtasks_per_doc=subtasks_per_doc,
        subtasks=subtasks, line_separator=line_separator)

  def sample_document(self, rng: np.random.Generator) -> NonsenseDocument:
    return self.generator.generate(rng)

  def sample_text(self, rng: np.random.Generator) -> tuple[str, str]:
    """(article, summary) text, for a SeqIO task that tokenises text itself."""
    return self.generator.generate_document(rng)

  def encode_text(self, article: str, summary: str) -> Example:
    """Token ids of the full texts (`spec.encode_fn`, nothing dropped), as SeqIO would."""
    return (np.asarray(list(self.spec.encode_fn(article)), dtype=np.int32),
            np.asarray(list(self.spec.encode_fn(summary)), dtype=np.int32))

  def sample(self, rng: np.random.Generator) -> Example:
    return self.encode_text(*self.sample_text(rng))
