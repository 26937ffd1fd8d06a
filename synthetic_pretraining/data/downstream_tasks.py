"""SeqIO tasks of the six downstream tasks, reading the splits written by `prepare`.

`register_downstream_tasks(vocabulary, data_dir=None, suffix="")` registers
`cnndm_10k, code_translation, mtop, retrosynthesis, squad, webqsp` (each + suffix). Each reads
`<data_dir>/<task>/{train,validation,test}.tsv` (squad: train, validation) with a
`seqio.TextLineDataSource`, splits lines on TAB, tokenises `inputs`/`targets` with `vocabulary`
and appends EOS (output features `inputs`, `targets`, both `add_eos=True`). `inputs_pretokenized`
and `targets_pretokenized` keep the raw strings.

Where the files are is decided when a dataset is built, not at import or registration:
`data_dir` passed here, else the gin binding `downstream_data_dir.data_dir` (the run files' macro
`DOWNSTREAM_DATA_DIR`), else `~/synthetic_pretraining_data/finetuning` (the default output of
`prepare`). No environment variable is read here. A missing split
file raises FileNotFoundError naming the path and the `prepare` command that writes it.

Pipelines and metrics (SPEC §3/§4):
- code_translation, mtop, retrosynthesis, webqsp: tab split → `tokenize_and_append_eos` (the
  release's `translation_processors`; EOS is appended before truncation to the feature length);
  metric `metrics.exact_match_f1` (em, f1).
- cnndm_10k: same pipeline; metric `metrics.rouge` (rouge1, rouge2, rougeLsum).
- squad: as T5's `squad_v010_allanswers`: `tokenize` → cache placeholder →
  `append_eos_after_trim`; the postprocessor hands the metric ALL gold answers (third TSV field);
  metric `metrics.squad` (em, f1).
Targets seen by the metrics of the five custom tasks (`target_text`): "decoded" (default) = the
target ids decoded by the vocabulary, as the release scored (it kept no pretokenized copy, so a
character the vocabulary cannot represent — e.g. `{` with T5's SentencePiece — is unk on both
sides); "raw" = the raw target string from the TSV. Predictions are always the decoded output.

A line that does not have the task's number of TAB-separated fields raises an error (the release
silently dropped such lines; `prepare` never writes them). `FEATURE_LENGTHS` holds SPEC §3's
input/target lengths per task for gin files.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Mapping, Sequence

import gin
import seqio
import tensorflow as tf

from synthetic_pretraining.data import catalogue
from synthetic_pretraining.data import metrics
from synthetic_pretraining.data import vocab as vocab_lib
from synthetic_pretraining.data.downstream import common

# Derived from the catalogue (data/catalogue.py), which holds every fact of a task.
FEATURE_LENGTHS: Mapping[str, Mapping[str, int]] = {
    name: dict(task.feature_lengths) for name, task in catalogue.CATALOGUE.items()}
DOWNSTREAM_TASKS = tuple(catalogue.CATALOGUE)
SPLITS: Mapping[str, tuple[str, ...]] = {
    name: task.splits for name, task in catalogue.CATALOGUE.items()}
NUM_FIELDS: Mapping[str, int] = {name: task.num_fields for name, task in catalogue.CATALOGUE.items()}
TARGET_TEXT_MODES = ("decoded", "raw")


@gin.configurable
def downstream_data_dir(data_dir: str | None = None) -> str:
  """Root of the prepared splits: `data_dir` (gin-bindable), else `common.DEFAULT_DATA_DIR`."""
  return os.path.expanduser(data_dir or common.DEFAULT_DATA_DIR)


class PreparedSplitsSource(seqio.TextLineDataSource):
  """TextLineDataSource over `<root>/<task>/<split>.tsv`, the root resolved at build time."""

  def __init__(self, task: str, splits: tuple[str, ...], data_dir: str | None = None,
               vocabulary: seqio.Vocabulary | None = None):
    self._task = task
    self._data_dir = data_dir
    self._vocabulary = vocabulary
    super().__init__({split: f"<data_dir>/{task}/{split}.tsv" for split in splits})

  def get_dataset(self, *args, **kwargs) -> tf.data.Dataset:
    # The task's vocabulary is loaded before its tokenising preprocessors are traced, so that an
    # unreadable SentencePiece model is one clear error rather than a TensorFlow staging error.
    if self._vocabulary is not None:
      vocab_lib.ensure_available(self._vocabulary)
    return super().get_dataset(*args, **kwargs)

  def split_path(self, split: str) -> str:
    root = os.path.expanduser(self._data_dir) if self._data_dir else downstream_data_dir()
    return os.path.join(root, self._task, f"{split}.tsv")

  def list_shards(self, split: str) -> list[str]:
    if split not in self.splits:
      raise ValueError(f"task {self._task} has no split {split!r} (splits: {list(self.splits)})")
    path = self.split_path(split)
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(
          f"prepared split {path} not found: run `synthetic-pretraining prepare --task "
          f"{self._task} --data_dir {os.path.dirname(os.path.dirname(path))}` (the data root "
          f"comes from register_downstream_tasks(data_dir=…), else gin "
          f"`downstream_data_dir.data_dir` (macro DOWNSTREAM_DATA_DIR), else "
          f"{common.DEFAULT_DATA_DIR})")
    return [path]


def parse_tsv(dataset: tf.data.Dataset, task: str, num_fields: int,
              keys: tuple[str, ...] | None = None) -> tf.data.Dataset:
  """Splits each line on TAB into the task's fields (inputs, targets[, answers…])."""
  keys = tuple(keys or ("inputs", "targets", "answers")[:num_fields])

  def parse(line):
    fields = tf.strings.split(line, "\t")
    with tf.control_dependencies([tf.debugging.assert_equal(
        tf.size(fields), num_fields,
        message=(f"{task}: a line of the prepared split does not have {num_fields} TAB-separated "
                 f"fields ({', '.join(keys)}); re-run `synthetic-pretraining prepare --task "
                 f"{task}`"))]):
      return {key: tf.identity(fields[i]) for i, key in enumerate(keys)}

  return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def target_text(output_or_target: Any, example: Mapping[str, Any] | None = None,
                is_target: bool = False, *, vocabulary: seqio.Vocabulary,
                mode: str = "decoded") -> Any:
  """Postprocessor of the custom tasks: the target text per `mode`; predictions unchanged."""
  if is_target and mode == "decoded" and example is not None and "targets" in example:
    return vocabulary.decode([int(i) for i in example["targets"]])
  return output_or_target


def squad_answers(output_or_target: Any, example: Mapping[str, Any] | None = None,
                  is_target: bool = False) -> Any:
  """T5's `qa` postprocessor: every gold answer for targets, the prediction unchanged."""
  if is_target and example is not None and "answers" in example:
    answers = example["answers"]
    return json.loads(answers.decode("utf-8") if isinstance(answers, bytes) else answers)
  return output_or_target


def register_downstream_tasks(vocabulary: seqio.Vocabulary, data_dir: str | None = None,
                              suffix: str = "", target_text_mode: str = "decoded",
                              tasks: Sequence[catalogue.DownstreamTask] | None = None
                              ) -> list[str]:
  """Registers the catalogue's downstream seqio tasks (name + suffix); returns their names.

  Re-registering a name replaces the earlier task, so notebooks and tests may call this again.

  Args:
    vocabulary: used for inputs and targets (T5 SentencePiece + 100 extra ids in the paper;
      a locally trained SentencePiece model or seqio.ByteVocabulary offline).
    data_dir: root of the prepared splits; None resolves it when a dataset is built (module doc).
    suffix: appended to every task name (e.g. "_byte" for a second vocabulary).
    target_text_mode: "decoded" (release behaviour) or "raw": the target text the custom tasks'
      metrics compare against.
    tasks: catalogue entries to register (default: all of `catalogue.CATALOGUE`).
  """
  if target_text_mode not in TARGET_TEXT_MODES:
    raise ValueError(f"target_text_mode must be one of {TARGET_TEXT_MODES}, "
                     f"got {target_text_mode!r}")
  output_features = {
      "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True),
      "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True),
  }
  names = []
  for entry in (tasks if tasks is not None else catalogue.CATALOGUE.values()):
    parse = functools.partial(parse_tsv, task=entry.name, num_fields=entry.num_fields,
                              keys=entry.fields)
    if entry.pipeline == "eos_after_trim":
      preprocessors = [parse, seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                       seqio.preprocessors.append_eos_after_trim]
    else:
      preprocessors = [parse, seqio.preprocessors.tokenize_and_append_eos]
    if entry.postprocessor == "squad_answers":
      postprocess_fn = squad_answers
    else:
      postprocess_fn = functools.partial(target_text, vocabulary=vocabulary,
                                         mode=target_text_mode)
    name = entry.name + suffix
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name,
        source=PreparedSplitsSource(entry.name, entry.splits, data_dir, vocabulary),
        output_features=output_features,
        preprocessors=preprocessors,
        postprocess_fn=postprocess_fn,
        metric_fns=list(metrics.metric_fns(entry)))
    names.append(name)
  return names
