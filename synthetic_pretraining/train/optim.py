"""Optimiser, learning-rate schedules and the loss, with the settings of SPEC §5.2."""

from __future__ import annotations

import gin
import jax
import jax.numpy as jnp
import optax


@gin.configurable
def learning_rate_schedule(factors: str = "constant * rsqrt_decay", base_learning_rate: float = 1.0,
                           warmup_steps: int = 10_000,
                           decay_steps: int | None = None) -> optax.Schedule:
  """T5X's factor-string schedules; supported factors: constant, rsqrt_decay, linear_decay.

  `constant * rsqrt_decay` with base 1.0 is the paper's pre-training schedule
  (1/√max(step, warmup): 0.01 for 10k steps, then inverse-sqrt decay); `constant` with the
  task's learning rate is its fine-tuning schedule. `linear_decay` multiplies by
  max(0, 1 − step/decay_steps) (T5X's factor of that name without its offset), so a run scored at
  its last step is scored after the rate has decayed to zero.
  """
  names = [f.strip() for f in factors.split("*") if f.strip()]
  unknown = sorted(set(names) - {"constant", "rsqrt_decay", "linear_decay"})
  if unknown or not names:
    raise ValueError(f"unknown learning-rate factors {unknown or factors!r}; supported: "
                     "'constant', 'rsqrt_decay', 'linear_decay' joined by '*'")
  if "linear_decay" in names and not (decay_steps and decay_steps > 0):
    raise ValueError(f"learning-rate factor 'linear_decay' needs decay_steps > 0, got "
                     f"{decay_steps!r}")

  def schedule(step):
    rate = jnp.asarray(1.0, jnp.float32)
    for name in names:
      if name == "constant":
        rate = rate * base_learning_rate
      elif name == "linear_decay":
        rate = rate * jnp.maximum(0.0, 1.0 - jnp.asarray(step, jnp.float32) / decay_steps)
      else:
        rate = rate * jax.lax.rsqrt(jnp.maximum(jnp.asarray(step, jnp.float32), warmup_steps))
    return rate

  return schedule


@gin.configurable
def adafactor(learning_rate: optax.Schedule, decay_rate: float = 0.8,
              clipping_threshold: float | None = 1.0, min_dim_size_to_factor: int = 128,
              multiply_by_parameter_scale: bool = True, epsilon1: float = 1e-30,
              momentum: float | None = None) -> optax.GradientTransformation:
  """optax Adafactor with T5X's defaults (ε2 = 1e-3 is optax's parameter-scale floor)."""
  return optax.adafactor(learning_rate=learning_rate, decay_rate=decay_rate,
                         clipping_threshold=clipping_threshold,
                         min_dim_size_to_factor=min_dim_size_to_factor,
                         multiply_by_parameter_scale=multiply_by_parameter_scale, eps=epsilon1,
                         momentum=momentum)


def cross_entropy_loss(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                       z_loss: float = 0.0, label_smoothing: float = 0.0):
  """Token cross-entropy SUMMED over weighted (non-pad) targets, plus z-loss, as T5X.

  Returns (total_loss, z_loss_part, per-token loss). Label smoothing mixes the one-hot target with
  the uniform distribution and subtracts the smoothed target's entropy (T5X's normalising constant),
  so a perfect prediction still has zero loss.
  """
  vocab = logits.shape[-1]
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  token_loss = log_z - target_logit  # No [batch, length, vocab] one-hot without smoothing.
  if label_smoothing:
    confidence = 1.0 - label_smoothing
    low = label_smoothing / (vocab - 1)
    normalizing = -(confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low + 1e-20))
    mean_log_prob = jnp.mean(logits, axis=-1) - log_z
    # −Σ soft·log p = −(confidence − low)·log p[target] − low·vocab·mean(log p).
    token_loss = ((confidence - low) * token_loss - low * vocab * mean_log_prob) - normalizing
  token_z = z_loss * jnp.square(log_z)
  weights = weights.astype(jnp.float32)
  total = jnp.sum((token_loss + token_z) * weights)
  return total, jnp.sum(token_z * weights), token_loss
