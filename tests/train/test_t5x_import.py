"""T5X checkpoint import: legacy (msgpack + TensorStore) and orbax layouts, written by the tests."""

import os
import shutil

from flax import serialization
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorstore as ts

from synthetic_pretraining.train import t5x_import

flatten = t5x_import.flatten_params

QUERY = "encoder/layers_0/attention/query/kernel"
CROSS_OUT = "decoder/layers_1/encoder_decoder_attention/out/kernel"
RELPOS = "encoder/relpos_bias/rel_embedding"
EMBEDDING = "token_embedder/embedding"


def tiny_t5_params(seed: int, vocab: int = 16, d_model: int = 8, heads: int = 2,
                   head_dim: int = 4, d_ff: int = 12, layers: int = 2,
                   v1_1: bool = False) -> dict:
  """A T5 (v1.0, or v1.1 with gated MLP and untied logits) tree with random float32 leaves."""
  rng = np.random.default_rng(seed)

  def arr(*shape):
    return rng.standard_normal(shape).astype(np.float32)

  def attention():
    return {"query": {"kernel": arr(d_model, heads * head_dim)},
            "key": {"kernel": arr(d_model, heads * head_dim)},
            "value": {"kernel": arr(d_model, heads * head_dim)},
            "out": {"kernel": arr(heads * head_dim, d_model)}}

  def mlp():
    if v1_1:
      return {"wi_0": {"kernel": arr(d_model, d_ff)}, "wi_1": {"kernel": arr(d_model, d_ff)},
              "wo": {"kernel": arr(d_ff, d_model)}}
    return {"wi": {"kernel": arr(d_model, d_ff)}, "wo": {"kernel": arr(d_ff, d_model)}}

  encoder = {"relpos_bias": {"rel_embedding": arr(heads, 32)},
             "encoder_norm": {"scale": arr(d_model)}}
  decoder = {"relpos_bias": {"rel_embedding": arr(heads, 32)},
             "decoder_norm": {"scale": arr(d_model)}}
  for i in range(layers):
    encoder[f"layers_{i}"] = {"attention": attention(), "mlp": mlp(),
                              "pre_attention_layer_norm": {"scale": arr(d_model)},
                              "pre_mlp_layer_norm": {"scale": arr(d_model)}}
    decoder[f"layers_{i}"] = {"self_attention": attention(),
                              "encoder_decoder_attention": attention(), "mlp": mlp(),
                              "pre_self_attention_layer_norm": {"scale": arr(d_model)},
                              "pre_cross_attention_layer_norm": {"scale": arr(d_model)},
                              "pre_mlp_layer_norm": {"scale": arr(d_model)}}
  if v1_1:
    decoder["logits_dense"] = {"kernel": arr(d_model, vocab)}
  return {"token_embedder": {"embedding": arr(vocab, d_model)}, "encoder": encoder,
          "decoder": decoder}


def _write_zarr(path, array, dtype):
  store = ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": path}},
                  create=True, dtype=dtype, shape=array.shape).result()
  store.write(array).result()


def write_legacy_checkpoint(model_dir, step, target, tensorstore_names=(), bf16_names=(),
                            gcs_style_names=(), version=3, uint16_bf16_names=()):
  """Writes `checkpoint_<step>/` the way T5X's legacy Checkpointer does.

  Parameters in `tensorstore_names` go to zarr arrays `target.<name with dots>/` referenced from
  the msgpack index by a TensorStore spec; the rest are inline msgpack arrays. `bf16_names` are
  stored as bfloat16; `gcs_style_names` get the spec T5X writes on GCS (dummy bucket, top-level
  path); `uint16_bf16_names` are stored as raw bfloat16 bits in uint16 (checkpoint version 2).
  """
  step_dir = os.path.join(model_dir, f"checkpoint_{step}")
  os.makedirs(step_dir)
  index_target = {}
  for name, value in flatten(target).items():
    if name in bf16_names:
      value = value.astype(ml_dtypes.bfloat16)
    if name not in tensorstore_names:
      index_target[name] = value
      continue
    relative = "target." + name.replace("/", ".")
    if name in uint16_bf16_names:
      stored, dtype_name = value.astype(ml_dtypes.bfloat16).view(np.uint16), "uint16"
      _write_zarr(os.path.join(step_dir, relative), stored, ts.uint16)
    else:
      dtype_name = "bfloat16" if name in bf16_names else "float32"
      _write_zarr(os.path.join(step_dir, relative), value,
                  ts.bfloat16 if name in bf16_names else ts.float32)
    metadata = {"compressor": {"id": "gzip"}, "shape": list(value.shape),
                "chunks": np.array(value.shape)}
    if name in gcs_style_names:
      spec = {"driver": "zarr", "dtype": dtype_name, "path": relative, "metadata": metadata,
              "kvstore": {"driver": "gcs", "bucket": "t5x-dummy-bucket"}}
    else:
      spec = {"driver": "zarr", "dtype": dtype_name, "metadata": metadata,
              "kvstore": {"driver": "file", "path": relative}}
    index_target[name] = spec
  param_states = {name: {"v": np.zeros(3, np.float32)} for name in flatten(target)}
  contents = {"version": version,
              "optimizer": {"target": t5x_import.unflatten_params(index_target),
                            "state": {"step": np.asarray(step),
                                      "param_states": t5x_import.unflatten_params(param_states)}}}
  with open(os.path.join(step_dir, "checkpoint"), "wb") as f:
    f.write(serialization.msgpack_serialize(contents))
  return step_dir


def _assert_trees_equal(got, want):
  got, want = flatten(got), flatten(want)
  assert set(got) == set(want)
  for name in want:
    assert got[name].dtype == np.float32, name
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_legacy_checkpoint_with_inline_and_tensorstore_arrays(tmp_path):
  target = tiny_t5_params(seed=0)
  names = list(flatten(target))
  # About half the parameters in zarr arrays (always QUERY and CROSS_OUT), the rest inline.
  in_tensorstore = sorted((set(names[::2]) | {QUERY, CROSS_OUT}) - {RELPOS})
  bf16 = [QUERY, CROSS_OUT, RELPOS]  # stored bfloat16: two via TensorStore, one inline
  gcs_style = [n for n in in_tensorstore if n.startswith("decoder/layers_0")]
  write_legacy_checkpoint(str(tmp_path), 100, tiny_t5_params(seed=1))
  write_legacy_checkpoint(str(tmp_path), 200, target, in_tensorstore, bf16, gcs_style)

  params = t5x_import.load_t5x_params(str(tmp_path), expected=tiny_t5_params(seed=5))

  want = {n: (v.astype(ml_dtypes.bfloat16).astype(np.float32) if n in bf16 else v)
          for n, v in flatten(target).items()}
  _assert_trees_equal(params, t5x_import.unflatten_params(want))
  assert not np.array_equal(want[QUERY], target["encoder"]["layers_0"]["attention"]["query"]
                            ["kernel"])  # the bf16 rounding is real, so the check above bites
  older = t5x_import.load_t5x_params(str(tmp_path), step=100)
  _assert_trees_equal(older, tiny_t5_params(seed=1))
  by_step_dir = t5x_import.load_t5x_params(str(tmp_path / "checkpoint_200"))
  by_index_file = t5x_import.load_t5x_params(str(tmp_path / "checkpoint_200" / "checkpoint"))
  _assert_trees_equal(by_step_dir, params)
  _assert_trees_equal(by_index_file, params)


def test_version2_uint16_bfloat16_bits_are_reinterpreted(tmp_path):
  target = tiny_t5_params(seed=2, layers=1)
  write_legacy_checkpoint(str(tmp_path), 7, target, tensorstore_names=[QUERY],
                          uint16_bf16_names=[QUERY], version=2)
  params = t5x_import.load_t5x_params(str(tmp_path))
  want = target["encoder"]["layers_0"]["attention"]["query"]["kernel"]
  np.testing.assert_array_equal(flatten(params)[QUERY],
                                want.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_wrong_shapes_missing_and_unexpected_parameters_are_all_named(tmp_path):
  target = tiny_t5_params(seed=0)
  write_legacy_checkpoint(str(tmp_path), 10, target, tensorstore_names=[QUERY, RELPOS])
  expected = flatten(tiny_t5_params(seed=0))
  expected[QUERY] = np.zeros((8, 16), np.float32)  # checkpoint has (8, 8)
  expected[RELPOS] = np.zeros((4, 32), np.float32)  # checkpoint has (2, 32)
  del expected[CROSS_OUT]  # the checkpoint has it: unexpected
  expected["decoder/logits_dense/kernel"] = (8, 16)  # the model has it: missing
  with pytest.raises(ValueError) as error:
    t5x_import.load_t5x_params(str(tmp_path), expected=t5x_import.unflatten_params(expected))
  message = str(error.value)
  assert "checkpoint_10" in message
  assert f"shape differs: {QUERY}: checkpoint (8, 8) vs model (8, 16)" in message
  assert f"shape differs: {RELPOS}: checkpoint (2, 32) vs model (4, 32)" in message
  assert "missing from checkpoint: decoder/logits_dense/kernel (model shape (8, 16))" in message
  assert f"unexpected in checkpoint: {CROSS_OUT} (shape (8, 8))" in message
  assert "4 problem(s)" in message


def test_index_shape_disagreeing_with_the_stored_array_is_reported(tmp_path):
  target = tiny_t5_params(seed=0, layers=1)
  step_dir = write_legacy_checkpoint(str(tmp_path), 1, target, tensorstore_names=[QUERY])
  # Replace the zarr array by one of another shape behind the index's back.
  relative = "target." + QUERY.replace("/", ".")
  shutil.rmtree(os.path.join(step_dir, relative))
  _write_zarr(os.path.join(step_dir, relative), np.zeros((3, 3), np.float32), ts.float32)
  with pytest.raises(ValueError, match=rf"{QUERY}: the index says shape \(8, 8\), the stored "
                                       r"array has \(3, 3\)"):
    t5x_import.load_t5x_params(step_dir)


@pytest.mark.parametrize("use_ocdbt", [True, False])
def test_orbax_layout_round_trip(tmp_path, use_ocdbt):
  target = tiny_t5_params(seed=3, v1_1=True)
  stored = flatten(target)
  stored[EMBEDDING] = stored[EMBEDDING].astype(ml_dtypes.bfloat16)
  state = {"target": t5x_import.unflatten_params(stored),
           "state": {"step": np.int32(300),
                     "param_states": {"encoder": {"v_row": np.ones((4, 2), np.float32)}}}}
  checkpointer = ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_ocdbt=use_ocdbt))
  checkpointer.save(str(tmp_path / "checkpoint_300" / "state"), state)

  params = t5x_import.load_t5x_params(str(tmp_path), expected=target)

  want = flatten(target)
  want[EMBEDDING] = want[EMBEDDING].astype(ml_dtypes.bfloat16).astype(np.float32)
  _assert_trees_equal(params, t5x_import.unflatten_params(want))
  assert "state" not in params and "param_states" not in params


def test_missing_step_and_non_checkpoints_fail_clearly(tmp_path):
  write_legacy_checkpoint(str(tmp_path), 100, tiny_t5_params(seed=0, layers=1))
  with pytest.raises(FileNotFoundError, match=r"no checkpoint_5/ \(steps present: \[100\]\)"):
    t5x_import.load_t5x_params(str(tmp_path), step=5)
  with pytest.raises(ValueError, match="step 100, not of step 5"):
    t5x_import.load_t5x_params(str(tmp_path / "checkpoint_100"), step=5)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="not a T5X checkpoint"):
    t5x_import.load_t5x_params(str(empty))
  with pytest.raises(FileNotFoundError, match="no checkpoint at"):
    t5x_import.load_t5x_params(str(tmp_path / "nowhere"))
  tf_dir = tmp_path / "tf" / "checkpoint_1"
  tf_dir.mkdir(parents=True)
  (tf_dir / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-1"\n')
  with pytest.raises(ValueError, match="TensorFlow .* checkpoint index, not a T5X one"):
    t5x_import.load_t5x_params(str(tf_dir))
  (tf_dir / "checkpoint").write_bytes(serialization.msgpack_serialize({"version": 3,
                                                                       "optimizer": {}}))
  with pytest.raises(ValueError, match="no 'target'"):
    t5x_import.load_t5x_params(str(tf_dir))


def test_check_param_shapes_accepts_shape_tuples_and_shape_structs():
  import jax  # pylint: disable=g-import-not-at-top
  params = {"a": {"kernel": np.zeros((2, 3), np.float32)}, "b": np.zeros(4, np.float32)}
  t5x_import.check_param_shapes(params, {"a": {"kernel": (2, 3)},
                                         "b": jax.ShapeDtypeStruct((4,), np.float32)})
  with pytest.raises(ValueError, match=r"shape differs: b: checkpoint \(4,\) vs model \(5,\)"):
    t5x_import.check_param_shapes(params, {"a": {"kernel": (2, 3)}, "b": (5,)})


def test_project_model_tree_round_trips_through_a_legacy_checkpoint(tmp_path):
  from synthetic_pretraining.model import t5  # pylint: disable=g-import-not-at-top
  config = t5.get_config("tiny")
  params = {n: np.asarray(v) for n, v in flatten(t5.init_params(config, seed=3)).items()}
  write_legacy_checkpoint(str(tmp_path), 42, t5x_import.unflatten_params(params),
                          tensorstore_names=list(params)[::3])
  loaded = t5x_import.load_t5x_checkpoint(str(tmp_path), expected=t5.params_shapes(config))
  _assert_trees_equal(loaded, t5x_import.unflatten_params(params))


def test_tensorstore_paths_are_reanchored_at_the_directory_read():
  # pylint: disable=protected-access
  file_spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": "target.a.kernel"}}
  gcs_spec = {"driver": "zarr", "path": "target.a.kernel",
              "kvstore": {"driver": "gcs", "bucket": "t5x-dummy-bucket"}}
  for spec in (file_spec, gcs_spec):
    assert t5x_import._absolute_kvstore(spec, "gs://my-bucket/runs/set/checkpoint_5", "a") == {
        "driver": "gcs", "bucket": "my-bucket", "path": "runs/set/checkpoint_5/target.a.kernel"}
    assert t5x_import._absolute_kvstore(spec, "/ckpts/checkpoint_5", "a") == {
        "driver": "file", "path": "/ckpts/checkpoint_5/target.a.kernel"}
