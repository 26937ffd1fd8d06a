"""Every SeqIO task and mixture of the project, registered by importing this package.

Installed as `synthetic_pretraining.tasks`; a T5X user writes
`MIXTURE_OR_TASK_MODULE = "synthetic_pretraining.tasks"` (or `import synthetic_pretraining.tasks`).

Vocabulary: explicit. `register_all(vocabulary)` (re-)registers every name below for that
vocabulary; importing registers them for `synthetic_pretraining.data.vocab.task_vocabulary()`, the
gin-bound choice (`task_vocabulary.name` = 't5' — the default, the paper's SentencePiece model,
read lazily, so the import is cheap and works offline —, 'byte', or a local `.model` path; the run
files' macro `VOCABULARY`). The training loop calls `register_all()` again at the start of every
run, so the vocabulary bound for that run is the one its tasks use. Asking a task for data when its
SentencePiece model cannot be read raises `vocab.VocabularyUnavailableError`, which names the file
and the ways to provide a vocabulary. Environment variables are not read here.

* the 18 simple tasks under their paper ids (identity, reverse, duplicate, first_token, last_token,
  length, set, deduplicate, longest_word, count, search, delete, sort, replace, union, intersect,
  set1_minus_set2, set2_minus_set1); `induct`, `deduct`, `abduct`; `nonsense_summary`;
  `nesting_language` (targets only + T5 span corruption, density 0.15, mean span 3). STREAMED:
  generated on the fly, deterministic in (seed, shard, index), infinite train split and a fixed
  10,000-example validation split; see `synthetic_pretraining.data.synthetic_sources`.
* the same with suffix `_files` (e.g. `set_files`): read from the files `synthetic-pretraining
  generate` writes, `<data dir>/<paper id>/{train,valid}.txt` (data dir: gin
  `synthetic_data_dir.path`, env `SP_SYNTHETIC_DATA_DIR`, default
  `~/synthetic_pretraining_data/pretraining`).
* mixtures with equal rates: `lime` (induct, deduct, abduct), `simple_tasks_all` (the 18 simple
  tasks), and `lime_files`, `simple_tasks_all_files`.
* `natural_span_corruption`: T5 span corruption over a local natural-text corpus
  (`synthetic_pretraining.data.natural`).
* the downstream tasks of `synthetic_pretraining.data.downstream_tasks` (cnndm_10k,
  code_translation, mtop, retrosynthesis, squad, webqsp), with their metrics (data folder: gin
  `downstream_data_dir.data_dir` = macro `DOWNSTREAM_DATA_DIR`, resolved when a dataset is built).

Pre-training tasks carry no metric functions. Inputs and targets are int32 with EOS
(`append_eos_after_trim`). nonsense_summary's ids come from its generator, which encodes the text
with the same vocabulary's model (`VocabSpec.encode_fn`), i.e. what SeqIO's tokenizer gives.
Importing again (reload, or the source tree's `tasks` beside the installed package) replaces the
registrations instead of failing.
"""

from __future__ import annotations

import importlib
from typing import Optional

import seqio

from synthetic_pretraining.data import natural
from synthetic_pretraining.data import vocab as vocab_lib
# Relative: this folder is `synthetic_pretraining.tasks` when installed, `tasks` in the source tree.
from . import synthetic  # pylint: disable=g-importing-member,relative-beyond-top-level

_DOWNSTREAM_MODULE = "synthetic_pretraining.data.downstream_tasks"


def _register_downstream(vocabulary: seqio.Vocabulary) -> list[str]:
  try:
    downstream = importlib.import_module(_DOWNSTREAM_MODULE)
  except ModuleNotFoundError as e:
    if e.name != _DOWNSTREAM_MODULE:
      raise
    raise ImportError(f"cannot register the downstream tasks: module {_DOWNSTREAM_MODULE} is "
                      "missing from this installation of synthetic_pretraining") from None
  return list(downstream.register_downstream_tasks(vocabulary))


def register_all(vocabulary: Optional[seqio.Vocabulary] = None) -> list[str]:
  """Registers (or replaces) every task and mixture for `vocabulary`; returns their names.

  Args:
    vocabulary: the tasks' vocabulary; None: `vocab.task_vocabulary()` as bound in gin (default
      T5's SentencePiece model, loaded lazily).

  Returns:
    The registered names.
  """
  vocabulary = vocabulary or vocab_lib.task_vocabulary()
  names = synthetic.register_synthetic_tasks(vocabulary)
  natural.register_natural_task(vocabulary)
  names.append(natural.TASK_NAME)
  names += _register_downstream(vocabulary)
  return names


REGISTERED_NAMES: tuple[str, ...] = tuple(register_all())
