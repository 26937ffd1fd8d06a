"""Streamed and file-backed synthetic sources: addressing, resume, sharding, parsing errors."""

import functools

import gin
import pytest
import seqio
import tensorflow as tf

from synthetic_pretraining.data import synthetic_sources as ss
from synthetic_pretraining.generators import base
from synthetic_pretraining.generators import cli as generate_cli
from synthetic_pretraining.generators import registry
from synthetic_pretraining.generators.lines import read_data_file
from synthetic_pretraining.vocab_spec import VocabSpec

SPEC = VocabSpec.byte()


def _source(task_id="set", **kwargs):
  return ss.SyntheticStreamSource(functools.partial(ss.build_generator, task_id), lambda: SPEC,
                                  **kwargs)


def _take(ds, n):
  return [{k: v.tolist() for k, v in ex.items()} for ex in ds.take(n).as_numpy_iterator()]


def _expected(task_id, seed, shard, indices):
  task = registry.get_task(task_id, SPEC)
  return [{"inputs": example[0].tolist(), "targets": example[1].tolist()}
          for example in (base.example_at(task, seed, shard, i) for i in indices)]


@pytest.fixture
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_stream_equals_example_at():
  got = _take(_source().get_dataset("train", seed=3), 260)
  assert got[:4] + got[254:260] == _expected("set", 3, 0, [0, 1, 2, 3, 254, 255, 256, 257,
                                                          258, 259])


def test_seed_none_uses_default_seed(clean_gin):
  assert _take(_source().get_dataset("train"), 2) == _expected("set", 0, 0, [0, 1])
  gin.bind_parameter("synthetic_pretraining.stream_settings.default_seed", 7)
  assert _take(_source().get_dataset("train"), 2) == _expected("set", 7, 0, [0, 1])


def test_start_index_resumes_the_tail(clean_gin):
  full = _take(_source().get_dataset("train", seed=1), 530)
  assert _take(_source().get_dataset("train", seed=1, start_index=517), 13) == full[517:]
  gin.bind_parameter("synthetic_pretraining.stream_settings.start_index", 300)
  assert _take(_source().get_dataset("train", seed=1), 5) == full[300:305]


def test_shard_index_selects_generator_shard():
  shard = seqio.ShardInfo(index=2, num_shards=4)
  got = _take(_source().get_dataset("train", seed=5, shard_info=shard), 3)
  assert got == _expected("set", 5, 2, [0, 1, 2])
  assert got != _expected("set", 5, 0, [0, 1, 2])


def test_validation_is_fixed_finite_and_partitioned_by_shards():
  source = _source(num_valid_examples=600)
  full = _take(source.get_dataset("validation", seed=1), 10_000)
  assert len(full) == 600
  assert full == _take(source.get_dataset("validation", seed=99), 10_000)  # Seed-independent.
  assert full[:3] == _expected("set", ss.VALIDATION_SEED, 0, [0, 1, 2])
  assert full[:3] != _take(source.get_dataset("train", seed=0), 3)
  shards = [_take(source.get_dataset("validation", shard_info=seqio.ShardInfo(i, 2)), 10_000)
            for i in range(2)]
  assert len(shards[0]) + len(shards[1]) == 600
  # Blocks of 256 are dealt round-robin: shard 0 has blocks 0 and 2, shard 1 has block 1.
  assert shards[0] == full[:256] + full[512:]
  assert shards[1] == full[256:512]


def test_targets_only_source_emits_targets():
  source = _source("nesting_language", targets_only=True)
  got = _take(source.get_dataset("train", seed=0), 2)
  assert [set(ex) for ex in got] == [{"targets"}, {"targets"}]
  assert got[0]["targets"] == _expected("nesting_language", 0, 0, [0])[0]["targets"]


def test_bad_split_and_seed():
  with pytest.raises(ValueError, match="split 'test'"):
    _source().get_dataset("test")
  with pytest.raises(ValueError, match="stream seed"):
    _source().get_dataset("train", seed=ss.VALIDATION_SEED)


def test_generator_knobs_from_gin(clean_gin):
  gin.bind_parameter("synthetic_pretraining.generator_knobs.knobs",
                     {"identity": {"length_range": (10, 12)}})
  got = _take(_source("identity").get_dataset("train", seed=0), 50)
  assert {len(ex["targets"]) for ex in got} <= {10, 11, 12}


# -- files ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def set_files(tmp_path_factory):
  out = tmp_path_factory.mktemp("synthetic")
  task = registry.get_task("set", SPEC)
  generate_cli.write_task_files(task, out, num_examples=300, num_train=250, num_valid=40,
                                show_progress=False)
  return out


def test_file_source_reads_generated_files(set_files):
  source = ss.SyntheticFileSource("set", str(set_files))
  for split, name in (("train", "train.txt"), ("validation", "valid.txt")):
    expected = [{"inputs": i, "targets": t} for i, t in read_data_file(set_files / "set" / name)]
    assert _take(source.get_dataset(split), 10_000) == expected


def test_file_source_data_dir_from_gin(set_files, clean_gin):
  gin.bind_parameter("synthetic_pretraining.synthetic_data_dir.path", str(set_files))
  source = ss.SyntheticFileSource("set")
  assert source.path("validation") == str(set_files / "set" / "valid.txt")
  assert len(_take(source.get_dataset("validation"), 100)) == 40


def test_file_source_targets_only_accepts_both_layouts(tmp_path):
  (tmp_path / "nesting_language").mkdir()
  (tmp_path / "nesting_language" / "train.txt").write_text("[5, 6, 7]\n[]\t[8, 9]\n")
  source = ss.SyntheticFileSource("nesting_language", str(tmp_path), targets_only=True)
  assert _take(source.get_dataset("train"), 5) == [{"targets": [5, 6, 7]}, {"targets": [8, 9]}]


@pytest.mark.parametrize("bad_line", ["[1, 2]\t[3", "[1, 2] [3]", "[1, x]\t[3]", ""])
def test_malformed_line_names_file_and_line(tmp_path, bad_line):
  (tmp_path / "set").mkdir()
  path = tmp_path / "set" / "train.txt"
  path.write_text(f"[1, 2]\t[3]\n[4]\t[]\n{bad_line}\n[5]\t[6]\n")
  ds = ss.SyntheticFileSource("set", str(tmp_path)).get_dataset("train")
  with pytest.raises(tf.errors.InvalidArgumentError, match=f"{path}:3: malformed line"):
    _take(ds, 10)


def test_missing_file_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="valid.txt: no such file.*generate"):
    ss.SyntheticFileSource("set", str(tmp_path)).get_dataset("validation")
