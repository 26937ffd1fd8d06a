"""orbax checkpoints: keep N, restore onto another mesh shape, params-only loading, errors."""

import jax
import numpy as np
import pytest

from synthetic_pretraining.model import t5
from synthetic_pretraining.train import checkpoints
from tests.train.test_trainer import copy_batch, make_trainer


def test_restore_onto_a_different_mesh_shape(tmp_path):
  source = make_trainer(8, 4)  # mesh data 2 × model 4
  state = source.create_state()
  state, _ = source.train_step(state, source.shard_batch(copy_batch(np.random.default_rng(0))))
  ckpt = checkpoints.Checkpointer(str(tmp_path), period=1)
  assert ckpt.save(1, state.as_dict())
  ckpt.close()

  for devices, partitions in ((1, 1), (8, 2)):
    target = make_trainer(devices, partitions)
    restored = checkpoints.Checkpointer(str(tmp_path)).restore(1, target.create_state().as_dict())
    kernel = restored["params"]["encoder"]["layers_0"]["mlp"]["wi"]["kernel"]
    assert kernel.sharding.mesh.shape == {"data": devices // partitions, "model": partitions}
    assert int(restored["step"]) == 1
    for a, b in zip(jax.tree.leaves(jax.device_get(state.params)),
                    jax.tree.leaves(jax.device_get(restored["params"]))):
      np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(jax.device_get(state.opt_state)),
                    jax.tree.leaves(jax.device_get(restored["opt_state"]))):
      np.testing.assert_array_equal(a, b)


def test_keep_and_period_and_load_params(tmp_path):
  trainer = make_trainer(1, 1)
  state = trainer.create_state()
  ckpt = checkpoints.Checkpointer(str(tmp_path), period=2, keep=2)
  saved = [step for step in range(1, 7) if ckpt.save(step, state.as_dict())]
  ckpt.wait()
  assert saved == [2, 4, 6]
  assert ckpt.all_steps() == [4, 6] and ckpt.latest_step() == 6
  assert ckpt.save(7, state.as_dict(), force=True) and ckpt.latest_step() == 7
  ckpt.close()
  params = checkpoints.load_params(str(tmp_path))  # model dir → newest step
  expected = jax.device_get(state.params)
  assert t5.flatten_names(params).keys() == t5.flatten_names(expected).keys()
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_missing_checkpoint_and_shape_mismatch_messages(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    checkpoints.load_params(str(tmp_path / "nowhere"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="no orbax checkpoint found"):
    checkpoints.load_params(str(tmp_path / "empty"))
  model = {"a": {"kernel": np.zeros((2, 3))}, "b": np.zeros(4)}
  found = {"a": {"kernel": np.zeros((3, 3))}, "c": np.zeros(1)}
  with pytest.raises(checkpoints.IncompatibleCheckpointError) as error:
    checkpoints.check_compatible(model, found, "ckpt")
  text = str(error.value)
  assert "3 parameters differ" in text
  assert "shape differs: a/kernel: checkpoint (3, 3) vs model (2, 3)" in text
  assert "missing from checkpoint: b (model shape (4,))" in text
  assert "unexpected in checkpoint: c (shape (1,))" in text
