"""Tests for the nonsense-summarisation generator (SPEC §2.2).

Each subtask's summary is re-derived here from the modified article text alone (parsing the
`__<id>__<keyword>__` tokens), independently of the generator's own bookkeeping.
"""

import collections
import re

import numpy as np
import pytest

from synthetic_pretraining.generators import base
from synthetic_pretraining.generators import nonsense
from synthetic_pretraining.vocab_spec import VocabSpec

VOCAB = set(nonsense.nonsense_vocabulary())


def _tokens(line, tag, pattern=r".+"):
  """(position, keyword) of the `__<tag>__<keyword>__` tokens of a line."""
  regex = re.compile(rf"__{tag}__({pattern})__")
  return [(i, m.group(1)) for i, w in enumerate(line.split(" ")) if (m := regex.fullmatch(w))]


def _lines_with(article, tag):
  return [(i, _tokens(line, tag)) for i, line in enumerate(article) if _tokens(line, tag)]


# Independent re-derivations, one per subtask: each asserts `part` (the subtask's summary lines)
# against the final article lines.
def check_copy_one(article, part, tag="d3"):
  hits = _lines_with(article, tag)
  assert len(hits) == 1 and len(hits[0][1]) == 1
  assert re.fullmatch(r"keyword_\d", hits[0][1][0][1])
  assert part == (article[hits[0][0]],)


def check_copy_multiple(article, part):
  hits = _lines_with(article, "d4")
  assert len(hits) == 3
  assert part == tuple(article[i] for i, _ in hits)


def check_copy_shuffled(article, part):
  hits = _lines_with(article, "d5")
  assert len(hits) == 3
  assert sorted(part) == sorted(article[i] for i, _ in hits)


def check_copy_sorted(article, part):
  hits = _lines_with(article, "d6")
  keywords = [toks[0][1] for _, toks in hits]
  assert len(hits) == 3 and len(set(keywords)) == 3
  digits = [int(k.split("_")[1]) for k in keywords]
  assert part == tuple(article[i] for _, i in sorted(zip(digits, (i for i, _ in hits))))


def check_quoted(article, part):
  hits = _lines_with(article, "d7")
  assert len(hits) == 1
  words = article[hits[0][0]].split(" ")
  begin, end = words.index("__d7__begin_quote__"), words.index("__d7__end_quote__")
  assert begin < end - 1
  span = " ".join(words[begin + 1:end])
  assert part == (span if span[-1] == "." else span + " .",)


def check_bulleted(article, part):
  hits = _lines_with(article, "d8")
  assert len(hits) == 1
  line = article[hits[0][0]]
  assert line.startswith("__d8__bullet__ ")
  assert part == (line[len("__d8__bullet__ "):],)


def check_classify(article, part):
  hits = _lines_with(article, "d10")
  assert len(hits) == 1 and len(hits[0][1]) == 1
  q = int(re.fullmatch(r"keyword_(\d)", hits[0][1][0][1]).group(1))
  assert part == (f"the keyword was {'positive' if q < 5 else 'negative'} .",)


def check_replace_class(article, part):
  hits = _lines_with(article, "d11")
  assert len(hits) == 1 and len(hits[0][1]) == 1
  pos, keyword = hits[0][1][0]
  c = int(re.fullmatch(r"class_(\d)_kw_\d", keyword).group(1))
  words = article[hits[0][0]].split(" ")
  words[pos] = f"__d11__class_{c}__"
  assert part == (" ".join(words),)


def check_majority(article, part):
  hits = _lines_with(article, "d12")
  assert len(hits) in (3, 5) and all(len(t) == 1 for _, t in hits)
  counts = collections.Counter(t[0][1] for _, t in hits)
  winner = max(("keyword_1", "keyword_2"), key=lambda k: counts[k])
  assert part == (f"The keyword {winner[-1]} occurred more number of times .",)


def check_topics(article, part):
  hits = _lines_with(article, "d13")
  assert 2 <= len(hits) <= 5 and all(len(t) == 1 for _, t in hits)
  expected = []
  for c in range(3):
    expected.append(f"section __d13__class_{c}__")
    expected += [article[i] for i, t in hits if t[0][1].startswith(f"class_{c}_kw_")]
  assert part == tuple(expected)


def check_threshold(article, part):
  hits = _lines_with(article, "d14")
  assert len(hits) == 1 and len(hits[0][1]) == 1
  number = int(hits[0][1][0][1])
  assert 0 <= number <= 99
  assert part == (("the number was above or equal to threshold ." if number >= 50
                   else "the number was below threshold ."),)


def check_largest(article, part):
  hits = _lines_with(article, "d16")
  numbers = [int(k) for _, toks in hits for _, k in toks]
  assert 1 <= len(numbers) <= 4 and len(set(numbers)) == len(numbers) == len(hits)
  assert part == (f"The largest number is {max(numbers)} .",)


def check_paraphrase(article, part):
  hits = _lines_with(article, "d18")
  assert len(hits) == 1 and len(hits[0][1]) == 1
  pos, keyword = hits[0][1][0]
  source = int(re.fullmatch(r"src_(\d+)", keyword).group(1))
  assert 0 <= source < 20
  words = article[hits[0][0]].split(" ")
  (out,) = part
  out_words = out.split(" ")
  assert re.fullmatch(rf"__d18__target_{source}_[012]__", out_words[pos])
  assert out_words[:pos] + out_words[pos + 1:] == words[:pos] + words[pos + 1:]


def check_join(article, part):
  hits = _lines_with(article, "d19")
  assert len(hits) == 3 and all(len(t) == 1 for _, t in hits)
  assert len({t[0][1] for _, t in hits}) == 3
  sentence = "The combined sentence is "
  for i, toks in hits:
    words = article[i].split(" ")
    pos = toks[0][0]
    assert pos < len(words) - 2  # At least one word between the joiner and the last word.
    sentence += " ".join(words[pos:-1]) + " "
  assert part == (sentence + ".",)


def check_break(article, part):
  hits = _lines_with(article, "d20")
  assert len(hits) == 1 and len(hits[0][1]) == 2
  (a, ja), (b, jb) = hits[0][1]
  assert ja != jb
  words = article[hits[0][0]].split(" ")
  assert part == (" ".join(words[:a] + words[a:b] + ["."]),
                  " ".join(words[:a] + words[b:-1] + ["."]))


def check_truncate(article, part):
  hits = _lines_with(article, "d21")
  assert len(hits) == 1 and len(hits[0][1]) == 1
  pos = hits[0][1][0][0]
  assert part == (" ".join(article[hits[0][0]].split(" ")[:pos] + ["."]),)


CHECKS = {
    "CopyKeywordOneSentence": check_copy_one,
    "CopyKeywordMultipleSentences": check_copy_multiple,
    "CopyKeywordMultipleSentencesShuffled": check_copy_shuffled,
    "CopyKeywordMultipleSentencesSorted": check_copy_sorted,
    "CopyQuoted": check_quoted,
    "CopyBulleted": check_bulleted,
    "ClassifyKeyword": check_classify,
    "ReplaceClassKeyword": check_replace_class,
    "MajorityKeyword": check_majority,
    "TopicSegregation": check_topics,
    "ThresholdNumber": check_threshold,
    "LargestNumber": check_largest,
    "ParaphraseWords": check_paraphrase,
    "JoinClauses": check_join,
    "BreakClauses": check_break,
    "TruncateSentence": check_truncate,
}


def _check_modification(original, article):
  """Inserted quote/bullet tokens aside, the article is the original with some words overwritten
  by marked keywords; the final "." of each sentence stays unless a quote closes after it."""
  assert len(original) == len(article)
  for before, after in zip(original, article):
    b = before.split(" ")
    a = [w for w in after.split(" ")
         if not re.fullmatch(r"__d(7__(begin|end)_quote|8__bullet)__", w)]
    assert len(a) == len(b)
    for x, y in zip(b, a):
      assert x == y or re.fullmatch(r"__d\d+__.+__", y), (x, y)


def test_vocabulary_is_base26_least_significant_first():
  words = nonsense.nonsense_vocabulary(5000)
  assert words[:3] == ["aaa", "baa", "caa"]
  assert words[25:28] == ["zaa", "aba", "bba"]
  assert words[26 * 26] == "aab"
  assert len(set(words)) == 5000 and {len(w) for w in words} == {3}
  assert nonsense.nonsense_vocabulary(26)[-1] == "z"
  assert nonsense.nonsense_vocabulary(27)[26] == "ab"
  with pytest.raises(ValueError, match="must be >= 2"):
    nonsense.nonsense_vocabulary(1)


def test_subtask_list_is_the_release_sixteen():
  assert len(nonsense.SUBTASK_NAMES) == 16
  assert set(nonsense.SUBTASK_NAMES) == set(CHECKS)
  ids = [c.subtask_id for c in nonsense.SUBTASK_CLASSES]
  assert ids == ["d3", "d4", "d5", "d6", "d7", "d8", "d10", "d11", "d12", "d13", "d14", "d16",
                 "d18", "d19", "d20", "d21"]


def test_documents_satisfy_all_invariants():
  generator = nonsense.NonsenseSummaryGenerator()
  rng = np.random.default_rng(1)
  seen = collections.Counter()
  for _ in range(400):
    doc = generator.generate(rng)
    assert 7 <= len(doc.original_lines) <= 13
    for line in doc.original_lines:
      words = line.split(" ")
      assert words[-1] == "." and 5 <= len(words) - 1 <= 15
      assert set(words[:-1]) <= VOCAB
    assert len(doc.subtasks) == 3 and len(set(doc.subtasks)) == 3
    assert len(doc.summary_parts) == 3
    _check_modification(doc.original_lines, doc.article_lines)
    for name, part in zip(doc.subtasks, doc.summary_parts):
      CHECKS[name](doc.article_lines, part)
    assert doc.article == " ".join(doc.article_lines)
    assert doc.summary == " ".join(line for part in doc.summary_parts for line in part)
    seen.update(doc.subtasks)
  assert set(seen) == set(nonsense.SUBTASK_NAMES)  # 1200 draws over 16 subtasks.


@pytest.mark.parametrize("name", nonsense.SUBTASK_NAMES)
def test_each_subtask_alone(name):
  vocabulary = nonsense.nonsense_vocabulary()
  rng = np.random.default_rng(7)
  for _ in range(60):
    lines = nonsense.generate_article(rng, vocabulary)
    original = tuple(" ".join(w) for w in lines)
    part = tuple(nonsense.apply_subtask(name, lines, rng))
    article = tuple(" ".join(w) for w in lines)
    assert article != original
    _check_modification(original, article)
    CHECKS[name](article, part)


def test_shuffled_subtask_does_shuffle_and_sorted_orders_by_keyword():
  vocabulary = nonsense.nonsense_vocabulary()
  rng = np.random.default_rng(3)
  reordered = 0
  for _ in range(60):
    lines = nonsense.generate_article(rng, vocabulary)
    part = nonsense.apply_subtask("CopyKeywordMultipleSentencesShuffled", lines, rng)
    in_document_order = [" ".join(w) for w in lines if any(x.startswith("__d5__") for x in w)]
    reordered += part != in_document_order
  assert 20 < reordered < 60  # 5/6 of random orders differ from document order.


def test_later_insertions_show_in_earlier_subtasks_summaries():
  # Summaries are read after all modifications: with every document split between few sentences,
  # some copied sentence must carry another subtask's keyword.
  generator = nonsense.NonsenseSummaryGenerator(
      num_sentences_range=(3, 3), subtasks=["CopyKeywordOneSentence", "ThresholdNumber"],
      subtasks_per_doc=2)
  rng = np.random.default_rng(0)
  carried = 0
  for _ in range(100):
    doc = generator.generate(rng)
    copied = doc.summary_parts[doc.subtasks.index("CopyKeywordOneSentence")][0]
    carried += "__d14__" in copied
  assert carried > 10


def test_crowded_sentences_are_redrawn_not_crashed():
  # Two-word sentences leave too little room for JoinClauses + BreakClauses in one sentence.
  generator = nonsense.NonsenseSummaryGenerator(
      num_sentences_range=(4, 4), sentence_length_range=(2, 2),
      subtasks=["JoinClauses", "BreakClauses"], subtasks_per_doc=2)
  rng = np.random.default_rng(0)
  for _ in range(50):
    doc = generator.generate(rng)
    for name, part in zip(doc.subtasks, doc.summary_parts):
      CHECKS[name](doc.article_lines, part)


def test_knobs():
  generator = nonsense.NonsenseSummaryGenerator(
      vocab_size=30, num_sentences_range=(5, 6), sentence_length_range=(3, 4), subtasks_per_doc=1,
      subtasks=["LargestNumber", "CopyQuoted"], line_separator="\n")
  rng = np.random.default_rng(0)
  words = set(nonsense.nonsense_vocabulary(30))
  for _ in range(50):
    doc = generator.generate(rng)
    assert len(doc.subtasks) == 1 and doc.subtasks[0] in ("LargestNumber", "CopyQuoted")
    assert 5 <= len(doc.original_lines) <= 6
    assert all(3 <= len(l.split(" ")) - 1 <= 4 for l in doc.original_lines)
    assert {w for l in doc.original_lines for w in l.split(" ")[:-1]} <= words
    assert doc.article == "\n".join(doc.article_lines)


@pytest.mark.parametrize("kwargs, message", [
    (dict(subtasks=["Nope"]), "unknown nonsense subtask 'Nope'"),
    (dict(subtasks=["CopyQuoted", "CopyQuoted"]), "must be distinct"),
    (dict(subtasks_per_doc=17), r"subtasks_per_doc must be in \[1, 16\]"),
    (dict(num_sentences_range=(4, 6)), "need documents of at least 5 sentences"),
    (dict(sentence_length_range=(3, 2)), "sentence_length_range must be"),
    (dict(vocab_size=1), "must be >= 2"),
])
def test_bad_knobs_are_rejected(kwargs, message):
  with pytest.raises(ValueError, match=message):
    nonsense.NonsenseSummaryTask(VocabSpec.byte(), **kwargs)


def test_task_encodes_the_full_text():
  task = nonsense.NonsenseSummaryTask(VocabSpec.byte())
  assert task.name == "nonsense_summary"
  inputs, targets = task.sample(np.random.default_rng(5))
  article, summary = task.sample_text(np.random.default_rng(5))
  assert inputs.dtype == np.int32 and targets.dtype == np.int32
  assert bytes((inputs - 3).tolist()).decode() == article
  assert bytes((targets - 3).tolist()).decode() == summary
  # A leading lone-space piece is kept (the release tokenised whole text), unlike spec.encode.
  spec = VocabSpec(symbol_low=2, symbol_high=9, base_vocab_size=10, num_extra_ids=0,
                   encode_fn=lambda s: [3] + [5] * len(s.split()), space_piece_id=3)
  inputs, _ = nonsense.NonsenseSummaryTask(spec).sample(np.random.default_rng(0))
  assert inputs[0] == 3


def test_module_level_generate_document():
  article, summary = nonsense.generate_document(np.random.default_rng(2))
  assert isinstance(article, str) and isinstance(summary, str) and "__d" in article
  assert (article, summary) == nonsense.generate_document(np.random.default_rng(2))
  assert (article, summary) != nonsense.generate_document(np.random.default_rng(3))


def test_deterministic_addressing_and_resume():
  task = nonsense.NonsenseSummaryTask(VocabSpec.byte())
  stream = list(base.iter_examples(task, seed=3, shard=1, start=0, stop=260))
  assert len(stream) == 260
  for index in (0, 17, 255, 256, 259):
    inputs, targets = base.example_at(task, 3, 1, index)
    np.testing.assert_array_equal(inputs, stream[index][0])
    np.testing.assert_array_equal(targets, stream[index][1])
  resumed = list(base.iter_examples(task, seed=3, shard=1, start=250, stop=260))
  for (a, b), (c, d) in zip(resumed, stream[250:], strict=True):
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, d)
  other = base.example_at(task, 4, 1, 0)
  assert not np.array_equal(other[0], stream[0][0])
  assert len({bytes(x.tobytes()) for x, _ in stream}) == 260
