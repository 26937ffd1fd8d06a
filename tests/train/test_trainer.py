"""Sharded training: 1 device vs a 2×4 mesh, loss, schedules, learning a copy task."""

import jax
import numpy as np
import pytest

from synthetic_pretraining.model import t5
from synthetic_pretraining.train import optim
from synthetic_pretraining.train import partitioning
from synthetic_pretraining.train import trainer as trainer_lib


def make_trainer(num_devices, num_partitions, lr=0.01, config=None):
  mesh = partitioning.create_mesh(num_partitions, jax.devices()[:num_devices])
  optimizer = optim.adafactor(optim.learning_rate_schedule("constant", lr))
  return trainer_lib.Trainer(config or t5.get_config("tiny"), optimizer, mesh, seed=0)


def copy_batch(rng, batch=8, length=16, vocab=300):
  enc = np.zeros((batch, length), np.int32)
  for i in range(batch):
    n = int(rng.integers(3, length - 1))
    enc[i, :n] = rng.integers(3, vocab, n)
    enc[i, n] = 1
  dec_in = np.concatenate([np.zeros((batch, 1), np.int32), enc[:, :-1]], 1)
  return {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
          "decoder_target_tokens": enc.copy(), "decoder_loss_weights": (enc > 0).astype(np.float32)}


def test_eight_device_mesh_matches_one_device():
  assert jax.device_count() == 8, "conftest must give 8 host CPU devices"
  batch = copy_batch(np.random.default_rng(0))
  results = []
  for devices, partitions in ((1, 1), (8, 4)):
    trainer = make_trainer(devices, partitions)
    assert trainer.mesh.shape == {"data": devices // partitions, "model": partitions}
    state = trainer.create_state()
    sharded = trainer.shard_batch(batch)
    logits = np.asarray(trainer.logits(state.params, sharded))
    new_state, metrics = trainer.train_step(state, sharded)
    results.append((logits, trainer_lib.summarize(metrics), jax.device_get(new_state.params)))
  (logits1, m1, p1), (logits8, m8, p8) = results
  np.testing.assert_allclose(logits1, logits8, atol=1e-5)
  assert m1["loss"] == pytest.approx(m8["loss"], rel=1e-6)
  assert m1["num_tokens"] == m8["num_tokens"] == float((batch["decoder_target_tokens"] > 0).sum())
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_parameters_are_sharded_by_logical_axes():
  trainer = make_trainer(8, 4)
  params = trainer.init_params()
  wi = params["encoder"]["layers_0"]["mlp"]["wi"]["kernel"]  # ("embed", "mlp") → (None, model)
  assert wi.sharding.spec == jax.sharding.PartitionSpec(None, "model")
  assert wi.addressable_shards[0].data.shape == (64, 256 // 4)
  emb = params["token_embedder"]["embedding"]  # ("vocab", "embed") → (model, None)
  assert emb.addressable_shards[0].data.shape == (384 // 4, 64)
  norm = params["decoder"]["decoder_norm"]["scale"]
  assert norm.sharding.spec == jax.sharding.PartitionSpec(None)


def test_loss_is_summed_cross_entropy_with_z_loss():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 3, 7)).astype(np.float32)
  targets = np.array([[1, 2, 0], [3, 0, 0]])
  weights = (targets > 0).astype(np.float32)
  log_z = np.log(np.exp(logits).sum(-1))
  nll = log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  total, z, _ = optim.cross_entropy_loss(logits, targets, weights, z_loss=1e-4)
  assert float(total) == pytest.approx(float(((nll + 1e-4 * log_z ** 2) * weights).sum()),
                                       rel=1e-5)
  assert float(z) == pytest.approx(float((1e-4 * log_z ** 2 * weights).sum()), rel=1e-5)
  # Label smoothing: the loss is KL(smoothed target ‖ model), so it is 0 when they agree.
  soft = np.full(7, 0.1 / 6, np.float32)
  soft[2] = 0.9
  agree, _, _ = optim.cross_entropy_loss(np.log(soft)[None, None], np.array([[2]]),
                                         np.ones((1, 1)), label_smoothing=0.1)
  assert abs(float(agree)) < 1e-5
  row = logits[0, 0]
  log_p = row - np.log(np.exp(row).sum())
  soft_1 = np.full(7, 0.1 / 6)
  soft_1[1] = 0.9
  kl = float((soft_1 * (np.log(soft_1) - log_p)).sum())
  smoothed, _, _ = optim.cross_entropy_loss(logits[:1, :1], targets[:1, :1], np.ones((1, 1)),
                                            label_smoothing=0.1)
  assert float(smoothed) == pytest.approx(kl, rel=1e-5)


def test_schedules():
  rsqrt = optim.learning_rate_schedule("constant * rsqrt_decay", 1.0, warmup_steps=10_000)
  assert float(rsqrt(0)) == pytest.approx(0.01)
  assert float(rsqrt(10_000)) == pytest.approx(0.01)
  assert float(rsqrt(40_000)) == pytest.approx(0.005)
  constant = optim.learning_rate_schedule("constant", 3e-3)
  assert float(constant(0)) == float(constant(10 ** 6)) == pytest.approx(3e-3)
  with pytest.raises(ValueError, match="unknown learning-rate factors"):
    optim.learning_rate_schedule("cosine_decay")
  # linear_decay: rate · max(0, 1 − step/decay_steps), checked against the rule in NumPy.
  linear = optim.learning_rate_schedule("constant * linear_decay", 0.01, decay_steps=150)
  for step in (0, 1, 75, 149, 150, 400):
    assert float(linear(step)) == pytest.approx(0.01 * max(0.0, 1 - step / 150), rel=1e-6, abs=1e-9)
  with pytest.raises(ValueError, match="needs decay_steps > 0"):
    optim.learning_rate_schedule("constant * linear_decay", 0.01)


def test_batch_size_must_divide_data_axis():
  mesh = partitioning.create_mesh(2)
  with pytest.raises(ValueError, match="not divisible by the data-parallel mesh size 4"):
    partitioning.check_batch_size(6, mesh)
  with pytest.raises(ValueError, match="must divide the number of devices"):
    partitioning.create_mesh(3)


def test_tiny_model_learns_copy_task_through_the_loop(tmp_path):
  """The gin-bound loop (SeqIO pipeline, eval, checkpoint) learns to copy: ≥95% token accuracy.

  Runs in a child process on the 8-device CPU mesh of the other tests. An earlier session saw
  this loop abort in XLA's CPU all-reduce (rendezvous termination timeout) with 8 fake devices
  on 2 cores, which took the pytest worker down with it; since tf.data autotuning is off by
  default (data_input.get_dataset) it has not recurred (alone, two concurrent copies, the full
  suite), and the child process keeps a recurrence a failed test rather than a lost worker.
  """
  import os  # pylint: disable=import-outside-toplevel
  import pathlib  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  root = pathlib.Path(__file__).resolve().parents[2]
  code = ("import pathlib, tests.train.test_trainer as t; "
          f"t.learn_copy_task_through_the_loop(pathlib.Path({str(tmp_path)!r}))")
  out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                       text=True, check=False)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def learn_copy_task_through_the_loop(tmp_path):
  """The body of the test above (assertions included), run in the child process."""
  assert len(jax.devices()) == 8
  from synthetic_pretraining.train import loop, metrics_io
  from tests.train import toy_tasks
  from synthetic_pretraining.train import trainer as trainer_lib
  final = loop.train(
      model_dir=str(tmp_path), model_config=t5.get_config("tiny"),
      dataset=loop.DatasetConfig(toy_tasks.NAME, {"inputs": 12, "targets": 12}, 32,
                                 module="tests.train.toy_tasks"),
      train_steps=600, learning_rate_fn=optim.learning_rate_schedule("constant", 0.03),
      evaluation=loop.EvalConfig(period=200, steps=4),
      checkpointing=loop.CheckpointConfig(period=200), log_period=100,
      loss=trainer_lib.LossConfig(z_loss=0.0))
  assert final["accuracy"] >= 0.95
  records = list(metrics_io.read(str(tmp_path)))
  evals = [r for r in records if r["group"] == "training_eval"]
  assert [r["step"] for r in evals] == [200, 400, 600]
  assert evals[-1]["accuracy"] == pytest.approx(final["accuracy"])
  train_lines = [r for r in records if r["group"] == "train"]
  assert len(train_lines) == 6 and all(r["tokens_per_sec"] > 0 for r in train_lines)
  assert sorted(int(d.name) for d in (tmp_path / "checkpoints").iterdir() if d.name.isdigit()) == [
      200, 400, 600]
