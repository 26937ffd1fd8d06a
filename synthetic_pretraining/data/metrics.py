"""Downstream metrics with seqio's signature `fn(targets, predictions) -> dict[str, float]`.

- `rouge`: ROUGE-1/2/Lsum F-measure ×100 exactly as `t5.evaluation.metrics.rouge` computes it:
  `rouge_score` without stemming, " . " turned into " .\\n" in both texts (sentence breaks for
  ROUGE-Lsum), `BootstrapAggregator` (1,000 resamples from numpy's global RNG) mid value. Seed
  numpy (`np.random.seed`) beforehand for a reproducible figure.
- `exact_match_f1`: the release's `semantic_parsing_metrics` for code_translation, mtop,
  retrosynthesis and webqsp: EM = raw string equality, F1 = whitespace-token F1 (multiset overlap),
  no normalisation at all, both ×100. As in the release (t5's token F1), a pair without a shared
  token scores F1 0 — including two empty strings, which still score EM 100.
- `squad`: `t5.evaluation.metrics.squad`: SQuAD normalisation (lowercase, drop ASCII punctuation,
  drop the articles a/an/the, collapse whitespace), then the max EM and max token F1 over the
  gold answers of each question, ×100. `targets` is a list of answer lists.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Mapping, Sequence

import numpy as np
from rouge_score import rouge_scorer
from rouge_score import scoring

ROUGE_KEYS = ("rouge1", "rouge2", "rougeLsum")


def _check_lengths(targets: Sequence, predictions: Sequence) -> None:
  if len(targets) != len(predictions):
    raise ValueError(f"got {len(targets)} targets but {len(predictions)} predictions")
  if not targets:
    raise ValueError("no examples to score (empty targets and predictions)")


def rouge(targets: Sequence[str], predictions: Sequence[str],
          score_keys: Sequence[str] = ROUGE_KEYS, **scorer_kwargs) -> dict[str, float]:
  """ROUGE F-measures ×100 (bootstrap mid), as t5.evaluation.metrics.rouge."""
  _check_lengths(targets, predictions)
  scorer = rouge_scorer.RougeScorer(rouge_types=list(score_keys), **scorer_kwargs)
  aggregator = scoring.BootstrapAggregator()
  for target, prediction in zip(targets, predictions):
    aggregator.add_scores(scorer.score(target=_sentence_lines(target),
                                       prediction=_sentence_lines(prediction)))
  result = aggregator.aggregate()
  return {key: result[key].mid.fmeasure * 100 for key in score_keys}


def _sentence_lines(summary: str) -> str:
  return summary.replace(" . ", " .\n")


def token_f1(target: str, prediction: str) -> float:
  """F1 of the whitespace tokens' multiset overlap (0 when nothing is shared)."""
  target_tokens, prediction_tokens = target.split(), prediction.split()
  shared = sum((collections.Counter(target_tokens) & collections.Counter(prediction_tokens))
               .values())
  if shared == 0:
    return 0.0
  precision = shared / len(prediction_tokens)
  recall = shared / len(target_tokens)
  return 2 * precision * recall / (precision + recall)


def exact_match_f1(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Raw-string exact match and whitespace-token F1, both ×100 (no normalisation)."""
  _check_lengths(targets, predictions)
  em = np.mean([t == p for t, p in zip(targets, predictions)]) * 100
  f1 = np.mean([token_f1(t, p) for t, p in zip(targets, predictions)]) * 100
  return {"em": float(em), "f1": float(f1)}


def chrf(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """sacrebleu's corpus chrF (character n-gram F-score, 0–100): a graded score for sequence
  outputs (code, SMILES, logical forms) where exact match is 0 for small models. Not a paper
  metric; reported beside em/f1."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  _check_lengths(targets, predictions)
  return {"chrf": float(sacrebleu.corpus_chrf(list(predictions), [list(targets)]).score)}


_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_squad(text: str) -> str:
  """The official SQuAD v1.1 answer normalisation."""
  text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, float]:
  """SQuAD EM/F1 ×100: normalised, max over each question's gold answers."""
  _check_lengths(targets, predictions)
  em, f1 = [], []
  for answers, prediction in zip(targets, predictions):
    if isinstance(answers, str) or not answers:
      raise ValueError(f"each SQuAD target must be a non-empty list of answers, got {answers!r}")
    prediction = normalize_squad(prediction)
    golds = [normalize_squad(a) for a in answers]
    em.append(max(float(g == prediction) for g in golds))
    f1.append(max(token_f1(g, prediction) for g in golds))
  return {"em": float(np.mean(em) * 100), "f1": float(np.mean(f1) * 100)}


def metric_fns(task) -> tuple:
  """The metric functions of a catalogue entry (`data.catalogue.DownstreamTask.metrics`)."""
  return tuple(globals()[name] for name in task.metrics)


def _metric_table() -> Mapping[str, tuple]:
  from synthetic_pretraining.data import catalogue  # pylint: disable=g-import-not-at-top
  return {name: metric_fns(task) for name, task in catalogue.CATALOGUE.items()}


METRIC_FNS: Mapping[str, tuple] = _metric_table()
"""Task name -> metric functions, derived from the catalogue."""
