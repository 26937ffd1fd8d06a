"""`synthetic_pretraining.tasks`: every task and mixture gives well-formed batches (byte vocab)."""

import importlib
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import gin
import numpy as np
import pytest
import seqio

from synthetic_pretraining.data import feature_converters as fc
from synthetic_pretraining.data import preprocessors as sp_preprocessors
from synthetic_pretraining.data import synthetic_sources as ss
from synthetic_pretraining.data import vocab
from synthetic_pretraining.generators import base
from synthetic_pretraining.generators import cli as generate_cli
from synthetic_pretraining.generators import registry
from synthetic_pretraining.train import data_input
from synthetic_pretraining.vocab_spec import VocabSpec
from tests.conftest import REPO_ROOT

# Short lengths keep packing windows small (seqio packs max(lengths) examples at a time); longer
# examples are truncated, which append_eos_after_trim must handle too.
LENGTHS = {"inputs": 128, "targets": 128}
BATCH = 4


@pytest.fixture(scope="module")
def sp_tasks():
  """The registry module, every task registered for the byte vocabulary (no network)."""
  module = importlib.import_module("synthetic_pretraining.tasks")
  module.register_all(seqio.ByteVocabulary(extra_ids=100))
  yield module


@pytest.fixture
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def _batch(name, pack, seed=0, split="train", index=0):
  ds = seqio.get_dataset(name, LENGTHS, seqio.EncDecFeatureConverter(pack=pack),
                         dataset_split=split, shuffle=True, seed=seed, batch_size=BATCH)
  for i, batch in enumerate(ds.as_numpy_iterator()):
    if i == index:
      return batch
  raise AssertionError(f"{name}: fewer than {index + 1} batches")


def _check_row_unpacked(tokens):
  n = int(np.count_nonzero(tokens))
  assert n > 1 and (tokens[:n] != 0).all() and (tokens[n:] == 0).all()
  assert tokens[n - 1] == 1 and (tokens[:n - 1] != 1).all(), "exactly one EOS, at the end"


def _check_row_packed(tokens, segments, positions):
  n = int(np.count_nonzero(segments))
  assert n > 1 and (segments[n:] == 0).all() and (tokens[n:] == 0).all()
  assert (tokens[:n] != 0).all()
  assert segments[0] == 1 and set(np.diff(segments[:n])) <= {0, 1}
  starts = np.flatnonzero(np.diff(np.concatenate([[0], segments[:n]])))
  for seg, start in enumerate(starts):
    end = starts[seg + 1] if seg + 1 < len(starts) else n
    np.testing.assert_array_equal(positions[start:end], np.arange(end - start))
    assert tokens[end - 1] == 1 and (tokens[start:end - 1] != 1).all()
  return starts


def check_batch(batch, packed):
  keys = {"encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens",
          "decoder_loss_weights"}
  if packed:
    keys |= {"encoder_segment_ids", "decoder_segment_ids", "encoder_positions",
             "decoder_positions"}
  assert set(batch) == keys
  for key, value in batch.items():
    assert value.dtype == np.int32, key
    assert value.shape == (BATCH, LENGTHS["targets" if key.startswith("decoder") else "inputs"])
  targets, dec_inputs = batch["decoder_target_tokens"], batch["decoder_input_tokens"]
  np.testing.assert_array_equal(batch["decoder_loss_weights"], (targets != 0).astype(np.int32))
  for r in range(BATCH):
    if not packed:
      _check_row_unpacked(batch["encoder_input_tokens"][r])
      _check_row_unpacked(targets[r])
      np.testing.assert_array_equal(dec_inputs[r], np.concatenate([[0], targets[r][:-1]]))
      continue
    enc_starts = _check_row_packed(batch["encoder_input_tokens"][r],
                                   batch["encoder_segment_ids"][r], batch["encoder_positions"][r])
    dec_starts = _check_row_packed(targets[r], batch["decoder_segment_ids"][r],
                                   batch["decoder_positions"][r])
    assert len(enc_starts) == len(dec_starts)
    shifted = np.concatenate([[0], targets[r][:-1]])
    shifted[dec_starts] = 0  # Each packed segment starts its decoder inputs afresh.
    n = int(np.count_nonzero(batch["decoder_segment_ids"][r]))
    np.testing.assert_array_equal(dec_inputs[r][:n], shifted[:n])


@pytest.mark.parametrize("pack", [False, True], ids=["unpacked", "packed"])
@pytest.mark.parametrize("name", registry.TASK_NAMES)
def test_every_synthetic_task_gives_well_formed_batches(sp_tasks, name, pack):
  del sp_tasks
  check_batch(_batch(name, pack), packed=pack)


@pytest.mark.parametrize("name,pack", [("lime", True), ("simple_tasks_all", False)])
def test_mixtures_give_well_formed_batches(sp_tasks, name, pack):
  del sp_tasks
  check_batch(_batch(name, pack), packed=pack)


def test_validation_split_batches(sp_tasks):
  del sp_tasks
  check_batch(_batch("set", pack=False, split="validation"), packed=False)
  check_batch(_batch("nesting_language", pack=True, split="validation"), packed=True)


def test_registered_names(sp_tasks):
  tasks, mixtures = set(seqio.TaskRegistry.names()), set(seqio.MixtureRegistry.names())
  assert len(registry.TASK_NAMES) == 23
  for name in registry.TASK_NAMES:
    assert {name, name + "_files"} <= tasks
    assert seqio.get_mixture_or_task(name).metric_fns == []
  assert "natural_span_corruption" in tasks
  assert {"cnndm_10k", "code_translation", "mtop", "retrosynthesis", "webqsp"} <= tasks
  assert {"lime", "simple_tasks_all", "lime_files", "simple_tasks_all_files"} <= mixtures
  assert sorted(t.name for t in seqio.get_mixture_or_task("lime").tasks) == [
      "abduct", "deduct", "induct"]
  simple = [t.name for t in seqio.get_mixture_or_task("simple_tasks_all").tasks]
  assert len(simple) == 18 and "set" in simple and "induct" not in simple
  assert set(sp_tasks.REGISTERED_NAMES) <= tasks | mixtures


@pytest.mark.parametrize("name,pack", [("set", True), ("nesting_language", False)])
def test_same_seed_same_batch(sp_tasks, name, pack):
  del sp_tasks
  first = _batch(name, pack=pack, seed=11)
  again = _batch(name, pack=pack, seed=11)
  other = _batch(name, pack=pack, seed=12)
  for key in first:
    np.testing.assert_array_equal(first[key], again[key])
  assert not np.array_equal(first["encoder_input_tokens"], other["encoder_input_tokens"])


def test_streamed_examples_are_the_generators_with_eos(sp_tasks):
  del sp_tasks
  task = seqio.get_mixture_or_task("set")
  lengths = {"inputs": 512, "targets": 512}  # No truncation.
  got = list(task.get_dataset(lengths, "train", shuffle=True, seed=4).take(3).as_numpy_iterator())
  generator = registry.get_task("set", VocabSpec.byte())
  for index, example in enumerate(got):
    inputs, targets = base.example_at(generator, 4, 0, index)
    assert example["inputs"].tolist() == inputs.tolist() + [1]
    assert example["targets"].tolist() == targets.tolist() + [1]


def test_resume_with_start_index_gives_the_tail(sp_tasks, clean_gin):
  del sp_tasks
  third = _batch("reverse", pack=False, seed=2, index=2)
  gin.bind_parameter("synthetic_pretraining.stream_settings.start_index", 2 * BATCH)
  resumed = _batch("reverse", pack=False, seed=2, index=0)
  for key in third:
    np.testing.assert_array_equal(third[key], resumed[key])


def test_files_variant_reads_generated_files(sp_tasks, tmp_path, monkeypatch, clean_gin):
  del sp_tasks
  generate_cli.write_task_files(registry.get_task("union", VocabSpec.byte()), tmp_path,
                                num_examples=40, num_train=30, num_valid=8, show_progress=False)
  gin.bind_parameter("synthetic_pretraining.synthetic_data_dir.path", str(tmp_path))
  ds = seqio.get_dataset("union_files", LENGTHS, seqio.EncDecFeatureConverter(pack=False),
                         dataset_split="validation", shuffle=False, batch_size=BATCH)
  batch = next(ds.as_numpy_iterator())
  check_batch(batch, packed=False)
  lines = (tmp_path / "union" / "valid.txt").read_text().splitlines()
  length = LENGTHS["inputs"]
  for row, line in zip(batch["encoder_input_tokens"], lines):
    ids = [int(t) for t in line.split("\t")[0][1:-1].split(", ")][:length - 1] + [1]
    assert row[:len(ids)].tolist() == ids


def test_reimport_replaces_registrations(sp_tasks, clean_gin):
  gin.bind_parameter("synthetic_pretraining.data.vocab.task_vocabulary.name", "byte")
  with pytest.MonkeyPatch.context() as patch:
    importlib.reload(sp_tasks)
    if str(REPO_ROOT) not in sys.path:
      patch.syspath_prepend(str(REPO_ROOT))
    importlib.import_module("tasks")  # The source-tree copy registers the same names again.
  assert isinstance(seqio.get_mixture_or_task("set").output_features["inputs"].vocabulary,
                    seqio.ByteVocabulary)


def test_vocabulary_bound_in_gin_is_the_registered_one(sp_tasks, clean_gin):
  # Registration takes the gin-bound vocabulary; a byte task then gives the generator's examples.
  gin.bind_parameter("synthetic_pretraining.data.vocab.task_vocabulary.name", "byte")
  sp_tasks.register_all()
  task = seqio.get_mixture_or_task("identity")
  assert isinstance(task.output_features["targets"].vocabulary, seqio.ByteVocabulary)
  example = next(task.get_dataset({"inputs": 512, "targets": 512}, "train", shuffle=True,
                                  seed=3).as_numpy_iterator())
  inputs, targets = base.example_at(registry.get_task("identity", VocabSpec.byte()), 3, 0, 0)
  assert example["targets"].tolist() == targets.tolist() + [1]
  assert example["inputs"].tolist() == inputs.tolist() + [1]
  # Re-bound to T5 (not readable offline), the same names hold T5's SentencePiece vocabulary.
  gin.bind_parameter("synthetic_pretraining.data.vocab.task_vocabulary.name", "t5")
  sp_tasks.register_all()
  assert isinstance(seqio.get_mixture_or_task("identity").output_features["targets"].vocabulary,
                    vocab.T5Vocabulary)
  sp_tasks.register_all(seqio.ByteVocabulary(extra_ids=100))  # What the other tests expect.


_OFFLINE_SCRIPT = textwrap.dedent("""
    import os, sys
    assert not [k for k in os.environ if k.startswith("SP_")], "SP_* variables must be unset"
    import seqio
    import synthetic_pretraining.tasks  # Offline, no environment: must import and register.
    from synthetic_pretraining.data import vocab
    task = seqio.get_mixture_or_task(sys.argv[1])
    print("REGISTERED", type(task.output_features["targets"].vocabulary).__name__)
    try:
      ds = task.get_dataset({"inputs": 32, "targets": 32}, "train")
      next(iter(ds))
    except vocab.VocabularyUnavailableError as e:
      print("CLEAR", e)
      sys.exit(0)
    print("NO ERROR")
    sys.exit(1)
""")


@pytest.mark.parametrize("task", ["set", "code_translation"])
def test_offline_import_then_clear_error_for_unreachable_t5_vocabulary(task, tmp_path):
  # A fresh interpreter with no SP_* variables and every HTTP(S) request sent to a closed port:
  # importing the registry works; asking for data names the model file and the ways to provide one.
  env = {k: v for k, v in os.environ.items() if not k.startswith("SP_")}
  closed = "http://127.0.0.1:9"
  env.update(PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3", HTTPS_PROXY=closed,
             https_proxy=closed, HTTP_PROXY=closed, http_proxy=closed, NO_GCE_CHECK="true",
             GCE_METADATA_HOST="127.0.0.1:9", GCS_RETRY_CONFIG_MAX_RETRIES="0")
  if task == "code_translation":  # A prepared split, so that tokenising is what fails.
    (tmp_path / "code_translation").mkdir()
    (tmp_path / "code_translation" / "train.tsv").write_text("a b\tc d\n")
    code = _OFFLINE_SCRIPT.replace(
        "task = seqio", "import gin; gin.bind_parameter('downstream_data_dir.data_dir', "
        f"{str(tmp_path)!r})\ntask = seqio")
  else:
    code = _OFFLINE_SCRIPT
  result = subprocess.run([sys.executable, "-c", code, task], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert "REGISTERED T5Vocabulary" in result.stdout
  message = result.stdout.split("CLEAR ", 1)[1]
  assert "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model" in message
  for remedy in ("T5_SPM_PATH", "VOCABULARY = 'byte'", "synthetic-pretraining vocab"):
    assert remedy in message, remedy
  assert "Traceback" not in message and len(message.splitlines()) == 1


@pytest.mark.slow
def test_import_from_installed_copy(tmp_path):
  src, site = tmp_path / "src", tmp_path / "site"
  src.mkdir()
  for name in ("setup.py", "README.md"):
    shutil.copy(REPO_ROOT / name, src / name)
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")  # The install must build _native.
  for name in ("synthetic_pretraining", "tasks", "gin"):
    shutil.copytree(REPO_ROOT / name, src / name, ignore=ignore)
  subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                  "--no-build-isolation", "--target", str(site), str(src)], check=True,
                 capture_output=True, timeout=300)
  code = textwrap.dedent("""
      import seqio
      import synthetic_pretraining.tasks as sp_tasks
      sp_tasks.register_all(seqio.ByteVocabulary(extra_ids=100))
      from synthetic_pretraining.generators import native
      print("FILE", sp_tasks.__file__)
      print("NATIVE", native.module.__file__ if native.available() else "missing")
      print("NAMES", " ".join(sorted(seqio.TaskRegistry.names())))
      print("MIXTURES", " ".join(sorted(seqio.MixtureRegistry.names())))
      # Leave a live streamed iterator behind: the process must still exit (tf.data threads
      # call back into Python; see synthetic_sources._ExitGuard).
      iterator = iter(seqio.get_mixture_or_task("set").get_dataset(
          {"inputs": 256, "targets": 256}, "train", seed=0).prefetch(8))
      for _ in range(300):
        next(iterator)
      print("STREAMED")
  """)
  env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
  assert pathlib.Path(lines["FILE"]).is_relative_to(site)
  assert pathlib.Path(lines["NATIVE"]).is_relative_to(site), "the C kernels were not built"
  names = set(lines["NAMES"].split())
  assert set(registry.TASK_NAMES) <= names and "natural_span_corruption" in names
  assert {"lime", "simple_tasks_all"} <= set(lines["MIXTURES"].split())
  assert "STREAMED" in result.stdout


def _plain_seqio_twin(task: seqio.Task) -> seqio.Task:
  """The same task with seqio's per-example append_eos_after_trim as its last preprocessor."""
  name = f"plain_seqio_{task.name}"
  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name, source=task.source, output_features=task.output_features,
      preprocessors=list(task.preprocessors[:-1]) + [seqio.preprocessors.append_eos_after_trim],
      shuffle_buffer_size=None)


@pytest.mark.parametrize("name", ["set", "deduct", "nesting_language", "lime"])
@pytest.mark.parametrize("pack", [False, True])
def test_registered_pipeline_equals_plain_seqio(sp_tasks, name, pack):
  # What the trainer runs (batched EOS, seqio's trim skipped, batched converter) gives the same
  # batches as plain seqio (per-example EOS and trim, seqio's converter). Short lengths truncate.
  lengths = {"inputs": 48, "targets": 40}
  ours_task = seqio.get_mixture_or_task(name)
  assert sp_preprocessors.output_is_trimmed(ours_task)
  if isinstance(ours_task, seqio.Mixture):
    twins = [_plain_seqio_twin(t) for t in ours_task.tasks]
    seqio.MixtureRegistry.remove("plain_seqio_" + name)
    plain_task = seqio.MixtureRegistry.add("plain_seqio_" + name, [t.name for t in twins],
                                           default_rate=1.0)
  else:
    plain_task = _plain_seqio_twin(ours_task)
  kwargs = dict(dataset_split="validation", shuffle=False, seed=3, batch_size=BATCH)
  ours = seqio.get_dataset(ours_task, lengths, fc.BatchedEncDecFeatureConverter(pack=pack),
                           trim_output_features=False, **kwargs)
  plain = seqio.get_dataset(plain_task, lengths, seqio.EncDecFeatureConverter(pack=pack), **kwargs)
  compared = 0
  for got, want in zip(ours.take(40).as_numpy_iterator(), plain.take(40).as_numpy_iterator()):
    assert list(got) == list(want)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    compared += 1
  assert compared == 40


def test_output_is_trimmed_only_for_tasks_ending_in_the_batched_eos(sp_tasks):
  for name in ("set", "nesting_language", "lime", "simple_tasks_all", "set_files"):
    assert sp_preprocessors.output_is_trimmed(seqio.get_mixture_or_task(name)), name
  for name in ("code_translation", "natural_span_corruption"):
    assert not sp_preprocessors.output_is_trimmed(seqio.get_mixture_or_task(name)), name


@pytest.mark.parametrize("name,pack,jumps", [("set", False, True), ("set", True, False),
                                             ("lime", False, False),
                                             ("nesting_language", False, False)])
def test_resumed_training_data_equals_the_tail(sp_tasks, name, pack, jumps):
  del sp_tasks
  assert data_input.resumes_by_index(seqio.get_mixture_or_task(name), "train", pack) == jumps
  kwargs = dict(task_feature_lengths=LENGTHS, split="train", global_batch_size=BATCH,
                shuffle=True, seed=5, pack=pack, num_epochs=None)
  full = list(data_input.get_dataset(name, **kwargs).take(6).as_numpy_iterator())
  resumed = list(data_input.get_dataset(name, skip_batches=4, **kwargs).take(2).as_numpy_iterator())
  for got, want in zip(resumed, full[4:], strict=True):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_resume_jumps_without_regenerating(sp_tasks):
  # A million batches in: skipping would regenerate 4 million examples; the jump starts the
  # stream at example 4,000,000 directly (the generator's examples at that index, with EOS).
  del sp_tasks
  skip = 10**6
  batch = next(data_input.get_dataset(
      "set", task_feature_lengths={"inputs": 512, "targets": 512}, split="train",
      global_batch_size=BATCH, shuffle=True, seed=5, pack=False, num_epochs=None,
      skip_batches=skip).as_numpy_iterator())
  generator = registry.get_task("set", VocabSpec.byte())
  for row in range(BATCH):
    inputs, targets = base.example_at(generator, 5, 0, skip * BATCH + row)
    assert batch["encoder_input_tokens"][row, :len(inputs) + 1].tolist() == inputs.tolist() + [1]
    assert batch["decoder_target_tokens"][row, :len(targets) + 1].tolist() == targets.tolist() + [1]


def test_autotune_is_off_by_default_and_never_changes_the_batches(sp_tasks):
  # Autotuning only sets parallelism and buffers: the same batches, in the same order, either way
  # (get_dataset turns it off by default: deleting an autotuned iterator stalls; see there).
  del sp_tasks
  kwargs = dict(task_feature_lengths=LENGTHS, split="train", global_batch_size=BATCH,
                shuffle=True, seed=5, pack=False, num_epochs=None)
  off = data_input.get_dataset("set", **kwargs)
  on = data_input.get_dataset("set", autotune=True, **kwargs)
  assert off.options().autotune.enabled is False and on.options().autotune.enabled is True
  for got, want in zip(off.take(5).as_numpy_iterator(), on.take(5).as_numpy_iterator(),
                       strict=True):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
