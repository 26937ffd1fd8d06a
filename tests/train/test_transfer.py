"""Weight-transfer modes: which leaves come from the checkpoint, vocab-size changes, errors, gin."""

import flax.linen as nn
import gin
import numpy as np
import orbax.checkpoint as ocp
import pytest

from synthetic_pretraining.train import t5x_import
from synthetic_pretraining.train import transfer
from tests.train.test_t5x_import import tiny_t5_params
from tests.train.test_t5x_import import write_legacy_checkpoint

flatten = t5x_import.flatten_params
EMBEDDING = "token_embedder/embedding"
LOGITS = "decoder/logits_dense/kernel"


def _sources(result, fresh, ckpt):
  """Maps each leaf name to 'fresh' or 'ckpt' by value (the two trees differ in every leaf)."""
  out = {}
  for name, value in flatten(result).items():
    if np.array_equal(value, flatten(fresh)[name]):
      out[name] = "fresh"
    elif name in flatten(ckpt) and np.array_equal(value, flatten(ckpt)[name]):
      out[name] = "ckpt"
    else:
      out[name] = "other"
  return out


@pytest.mark.parametrize("v1_1", [False, True])
def test_each_mode_copies_exactly_the_right_leaves(v1_1):
  fresh, ckpt = tiny_t5_params(seed=0, v1_1=v1_1), tiny_t5_params(seed=1, v1_1=v1_1)
  fresh_copy = {n: v.copy() for n, v in flatten(fresh).items()}
  embedding_names = {EMBEDDING, LOGITS} if v1_1 else {EMBEDDING}

  got_all = transfer.transfer_weights(fresh, ckpt, mode="all")
  got_abe = transfer.transfer_weights(fresh, ckpt, mode="all_but_embedding")
  got_scratch = transfer.transfer_weights(fresh, ckpt, mode="from_scratch")

  names = set(flatten(fresh))
  assert set(flatten(got_all)) == set(flatten(got_abe)) == set(flatten(got_scratch)) == names
  assert set(_sources(got_all, fresh, ckpt).values()) == {"ckpt"}
  assert {n for n, s in _sources(got_abe, fresh, ckpt).items() if s == "fresh"} == embedding_names
  assert {n for n, s in _sources(got_abe, fresh, ckpt).items() if s == "ckpt"} == (
      names - embedding_names)
  assert set(_sources(got_scratch, fresh, ckpt).values()) == {"fresh"}
  assert transfer.transfer_weights(fresh, None, mode="from_scratch").keys() == fresh.keys()
  for name, value in flatten(fresh).items():  # inputs untouched
    np.testing.assert_array_equal(value, fresh_copy[name])
  assert all(v.dtype == np.float32 for v in flatten(got_all).values())


def test_default_mode_is_all_but_embedding():
  fresh, ckpt = tiny_t5_params(seed=0), tiny_t5_params(seed=1)
  got = transfer.transfer_weights(fresh, ckpt)
  assert _sources(got, fresh, ckpt)[EMBEDDING] == "fresh"
  assert _sources(got, fresh, ckpt)["decoder/decoder_norm/scale"] == "ckpt"


def test_vocab_size_differs():
  fresh = tiny_t5_params(seed=0, vocab=16, v1_1=True)
  ckpt = tiny_t5_params(seed=1, vocab=12, v1_1=True)

  with pytest.raises(ValueError) as error:
    transfer.transfer_weights(fresh, ckpt, mode="all")
  message = str(error.value)
  assert f"vocabulary size differs: {EMBEDDING}: checkpoint (12, 8) vs model (16, 8)" in message
  assert f"vocabulary size differs: {LOGITS}: checkpoint (8, 12) vs model (8, 16)" in message
  assert "all_but_embedding" in message and "allow_vocab_resize=True" in message

  resized = flatten(transfer.transfer_weights(fresh, ckpt, mode="all", allow_vocab_resize=True))
  np.testing.assert_array_equal(resized[EMBEDDING][:12], flatten(ckpt)[EMBEDDING])
  np.testing.assert_array_equal(resized[EMBEDDING][12:], flatten(fresh)[EMBEDDING][12:])
  np.testing.assert_array_equal(resized[LOGITS][:, :12], flatten(ckpt)[LOGITS])
  np.testing.assert_array_equal(resized[LOGITS][:, 12:], flatten(fresh)[LOGITS][:, 12:])
  others = set(resized) - {EMBEDDING, LOGITS}
  assert all(np.array_equal(resized[n], flatten(ckpt)[n]) for n in others)

  # A larger checkpoint vocabulary: the model's rows all come from the checkpoint.
  bigger = tiny_t5_params(seed=1, vocab=20)
  shrunk = flatten(transfer.transfer_weights(tiny_t5_params(seed=0), bigger, mode="all",
                                             allow_vocab_resize=True))
  np.testing.assert_array_equal(shrunk[EMBEDDING], flatten(bigger)[EMBEDDING][:16])

  abe = transfer.transfer_weights(fresh, ckpt, mode="all_but_embedding")
  sources = _sources(abe, fresh, ckpt)
  assert sources[EMBEDDING] == sources[LOGITS] == "fresh"
  assert {s for n, s in sources.items() if n not in (EMBEDDING, LOGITS)} == {"ckpt"}
  # A checkpoint without any embedding also works for all_but_embedding.
  no_embedding = {k: v for k, v in ckpt.items() if k != "token_embedder"}
  transfer.transfer_weights(fresh, no_embedding, mode="all_but_embedding")


def test_other_mismatches_name_every_parameter():
  fresh = tiny_t5_params(seed=0)
  ckpt = flatten(tiny_t5_params(seed=1))
  ckpt["encoder/layers_1/mlp/wi/kernel"] = np.zeros((8, 20), np.float32)
  ckpt[EMBEDDING] = np.zeros((16, 6), np.float32)  # d_model differs: not a vocabulary change
  del ckpt["decoder/decoder_norm/scale"]
  ckpt["decoder/layers_0/mlp/wi_0/kernel"] = np.zeros((8, 12), np.float32)
  ckpt = t5x_import.unflatten_params(ckpt)
  for mode in ("all", "all_but_embedding"):
    with pytest.raises(ValueError) as error:
      transfer.transfer_weights(fresh, ckpt, mode=mode, allow_vocab_resize=True)
    message = str(error.value)
    assert "shape differs: encoder/layers_1/mlp/wi/kernel: checkpoint (8, 20) vs model (8, 12)" in (
        message)
    assert "missing from checkpoint: decoder/decoder_norm/scale" in message
    assert "unexpected in checkpoint: decoder/layers_0/mlp/wi_0/kernel" in message
    assert (f"shape differs: {EMBEDDING}" in message) == (mode == "all")
  with pytest.raises(ValueError, match="unknown weight-transfer mode 'some'"):
    transfer.transfer_weights(fresh, fresh, mode="some")
  with pytest.raises(ValueError, match="needs checkpoint parameters"):
    transfer.transfer_weights(fresh, None, mode="all")


def test_partitioned_fresh_leaves_keep_their_metadata():
  fresh = tiny_t5_params(seed=0, layers=1)
  boxed = {"token_embedder": {"embedding": nn.Partitioned(fresh["token_embedder"]["embedding"],
                                                          names=("vocab", "embed"))},
           "decoder": {"decoder_norm": {"scale": nn.Partitioned(
               fresh["decoder"]["decoder_norm"]["scale"], names=("embed",))}}}
  ckpt = {"token_embedder": {"embedding": np.ones((16, 8), np.float32)},
          "decoder": {"decoder_norm": {"scale": np.full(8, 2.0, np.float32)}}}
  got = transfer.transfer_weights(boxed, ckpt, mode="all")
  scale = got["decoder"]["decoder_norm"]["scale"]
  assert isinstance(scale, nn.Partitioned) and scale.names == ("embed",)
  np.testing.assert_array_equal(scale.value, np.full(8, 2.0))
  abe = transfer.transfer_weights(boxed, ckpt, mode="all_but_embedding")
  assert abe["token_embedder"]["embedding"] is boxed["token_embedder"]["embedding"]


@pytest.fixture
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_gin_configured_loading_from_checkpoints(tmp_path, clean_gin):
  fresh, ckpt = tiny_t5_params(seed=0, layers=1), tiny_t5_params(seed=1, layers=1)
  write_legacy_checkpoint(str(tmp_path / "legacy"), 500, ckpt,
                          tensorstore_names=["encoder/layers_0/attention/query/kernel"])
  ocp.PyTreeCheckpointer().save(str(tmp_path / "orbax" / "checkpoint_40" / "state"),
                                {"target": ckpt, "state": {"step": np.int32(40)}})
  for kind, mode in (("legacy", "all"), ("orbax", "all_but_embedding")):
    gin.parse_config([f"initial_params_from_checkpoint.checkpoint_path = '{tmp_path / kind}'",
                      f"initial_params_from_checkpoint.mode = '{mode}'"])
    sources = _sources(transfer.initial_params_from_checkpoint(fresh), fresh, ckpt)
    assert sources.pop(EMBEDDING) == ("ckpt" if mode == "all" else "fresh")
    assert set(sources.values()) == {"ckpt"}
    gin.clear_config()

  gin.parse_config(["initial_params_from_checkpoint.checkpoint_path = 'from_scratch'",
                    "initial_params_from_checkpoint.mode = 'from_scratch'"])
  assert set(_sources(transfer.initial_params_from_checkpoint(fresh), fresh, ckpt).values()) == {
      "fresh"}
  gin.clear_config()
  with pytest.raises(ValueError, match="needs a checkpoint_path"):
    transfer.initial_params_from_checkpoint(fresh, mode="all")
  gin.parse_config(["transfer_weights.mode = 'all'"])
  assert set(_sources(transfer.transfer_weights(fresh, ckpt), fresh, ckpt).values()) == {"ckpt"}
