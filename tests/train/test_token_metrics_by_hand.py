"""Token accuracy and summed loss on hand-built batches (trainer.py's metric arithmetic)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthetic_pretraining.model import t5
from synthetic_pretraining.train import optim
from synthetic_pretraining.train import partitioning
from synthetic_pretraining.train import trainer as trainer_lib


def _trainer(num_devices=1, z_loss=1e-4):
  mesh = partitioning.create_mesh(1, jax.devices()[:num_devices])
  return trainer_lib.Trainer(t5.get_config("tiny"),
                             optim.adafactor(optim.learning_rate_schedule("constant", 0.01)),
                             mesh, seed=0, loss_config=trainer_lib.LossConfig(z_loss=z_loss))


# Two rows of three target positions over a 4-id vocabulary; 0 is padding.
TARGETS = np.array([[2, 3, 0], [1, 2, 2]], np.int32)
# Probabilities per position (rows sum to 1); logits = log p + shift, shift = the row's log Z.
PROBS = np.array([
    [[0.1, 0.2, 0.6, 0.1], [0.1, 0.5, 0.1, 0.3], [0.7, 0.1, 0.1, 0.1]],  # right, wrong, pad
    [[0.2, 0.4, 0.3, 0.1], [0.1, 0.1, 0.7, 0.1], [0.4, 0.1, 0.3, 0.2]],  # right, right, wrong
])
SHIFT = np.array([[0.0, 2.0, 5.0], [-1.0, 0.5, 3.0]])


def _hand_values(weights, z_loss):
  # Written out by hand from the table above.
  token_nll = {(0, 0): -math.log(0.6), (0, 1): -math.log(0.3), (0, 2): -math.log(0.7),
               (1, 0): -math.log(0.4), (1, 1): -math.log(0.7), (1, 2): -math.log(0.3)}
  loss = sum(w * (token_nll[i, j] + z_loss * SHIFT[i, j] ** 2)
             for (i, j), w in np.ndenumerate(weights))
  z = sum(w * z_loss * SHIFT[i, j] ** 2 for (i, j), w in np.ndenumerate(weights))
  correct = sum(w for (i, j), w in np.ndenumerate(weights) if (i, j) in {(0, 0), (1, 0), (1, 1)})
  return loss, z, correct, float(np.sum(weights))


@pytest.mark.parametrize("explicit_weights", [False, True])
def test_loss_sum_and_accuracy_by_hand(explicit_weights):
  trainer = _trainer(z_loss=1e-4)
  logits = jnp.asarray(np.log(PROBS) + SHIFT[..., None], jnp.float32)
  batch = {"decoder_target_tokens": jnp.asarray(TARGETS)}
  weights = (TARGETS > 0).astype(np.float32)
  if explicit_weights:  # Loss weights given by the batch take precedence over targets > 0.
    weights = np.array([[1, 0, 0], [1, 1, 1]], np.float32)
    batch["decoder_loss_weights"] = jnp.asarray(weights)
  loss, metrics = trainer._loss_and_metrics(logits, batch)  # pylint: disable=protected-access
  want_loss, want_z, want_correct, want_tokens = _hand_values(weights, 1e-4)
  assert float(loss) == pytest.approx(want_loss, rel=1e-5)
  assert float(metrics["loss"]) == pytest.approx(want_loss, rel=1e-5)  # A sum, not a mean.
  assert float(metrics["z_loss"]) == pytest.approx(want_z, rel=1e-5)
  assert float(metrics["correct"]) == want_correct  # The pad's argmax = 0 = its target: not counted.
  assert float(metrics["num_tokens"]) == want_tokens
  summary = trainer_lib.summarize(metrics)
  assert summary["accuracy"] == pytest.approx(want_correct / want_tokens)
  assert summary["loss"] == pytest.approx(want_loss / want_tokens, rel=1e-5)
  assert summary["num_tokens"] == want_tokens
  if not explicit_weights:
    assert summary["accuracy"] == pytest.approx(3 / 5)


def test_accumulated_eval_metrics_are_token_weighted():
  """Two batches of 5 and 1 tokens: accuracy is total correct / total tokens (not a mean of means)."""
  a = {"loss": np.float32(5.0), "z_loss": np.float32(0.0), "correct": np.float32(3.0),
       "num_tokens": np.float32(5.0)}
  b = {"loss": np.float32(1.0), "z_loss": np.float32(0.0), "correct": np.float32(0.0),
       "num_tokens": np.float32(1.0)}
  total = trainer_lib.accumulate(trainer_lib.accumulate(None, a), b)
  summary = trainer_lib.summarize(total)
  assert summary["accuracy"] == pytest.approx(3 / 6)
  assert summary["loss"] == pytest.approx(6 / 6)


def test_sharded_eval_step_equals_numpy_on_the_model_logits():
  trainer = _trainer(num_devices=8, z_loss=1e-4)
  rng = np.random.default_rng(3)
  batch_size, length = 8, 6
  targets = rng.integers(2, 384, (batch_size, length)).astype(np.int32)
  targets[rng.random((batch_size, length)) < 0.3] = 0
  targets[:, 0] = 5
  targets[:, -1] = rng.integers(2, 384, batch_size)  # Not padding (padding changes the masks).
  dec_in = np.concatenate([np.zeros((batch_size, 1), np.int32), targets[:, :-1]], 1)
  batch = {"encoder_input_tokens": rng.integers(2, 384, (batch_size, 7)).astype(np.int32),
           "decoder_input_tokens": dec_in, "decoder_target_tokens": targets,
           "decoder_loss_weights": (targets > 0).astype(np.float32)}
  params = trainer.init_params()
  # The last target feeds no decoder input: setting it to the model's argmax there changes no
  # logits and makes 4 predictions right for sure (the test must see right and wrong tokens).
  first = np.asarray(trainer.logits(params, trainer.shard_batch(batch)))
  best = first[:4, -1].argmax(-1)
  targets[:4, -1] = np.where(best > 0, best, targets[:4, -1])
  batch["decoder_loss_weights"] = (targets > 0).astype(np.float32)
  sharded = trainer.shard_batch(batch)
  logits = np.asarray(trainer.logits(params, sharded), np.float64)
  np.testing.assert_allclose(logits, first, atol=1e-5)
  metrics = trainer_lib.summarize(trainer.eval_step(params, sharded))
  log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  nll = log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  w = targets > 0
  want_loss = float(np.sum((nll + 1e-4 * log_z ** 2) * w))
  want_correct = float(np.sum((logits.argmax(-1) == targets) & w))
  assert 1 <= want_correct < w.sum()
  assert metrics["num_tokens"] == w.sum()
  assert metrics["loss"] * w.sum() == pytest.approx(want_loss, rel=1e-5)
  assert metrics["accuracy"] * w.sum() == pytest.approx(want_correct, abs=1e-6)
  assert metrics["z_loss"] * w.sum() == pytest.approx(float(np.sum(1e-4 * log_z ** 2 * w)),
                                                     rel=1e-4)
