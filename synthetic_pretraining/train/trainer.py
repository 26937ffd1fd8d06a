"""Train state, jitted sharded train/eval steps over a ("data", "model") mesh.

`Trainer` owns the model, the optimiser and the shardings. Parameters are sharded by their logical
axis names (partitioning.logical_axis_rules); Adafactor's state (factored row/column second moments,
a few KB per kernel) is replicated; batches are split over "data". The dropout key of step s is
`fold_in(PRNGKey(seed), s)`, so a resumed run draws exactly the dropout masks of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from synthetic_pretraining.model import logits_loss
from synthetic_pretraining.model import t5
from synthetic_pretraining.train import optim
from synthetic_pretraining.train import partitioning

Batch = dict[str, jax.Array]
MODEL_FEATURES = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
                  "decoder_loss_weights", "encoder_segment_ids", "decoder_segment_ids",
                  "encoder_positions", "decoder_positions")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any

  def as_dict(self) -> dict:
    return {"step": self.step, "params": self.params, "opt_state": self.opt_state}

  @classmethod
  def from_dict(cls, d: dict) -> "TrainState":
    return cls(step=d["step"], params=d["params"], opt_state=d["opt_state"])


@gin.configurable
@dataclasses.dataclass
class LossConfig:
  """The training loss (T5X's: summed token cross-entropy + z-loss, optional label smoothing).

  fused_output: the output layer and the loss as one step (`model.logits_loss`): float32 logits,
    their gradient matmuls run in the forward pass, no logits-sized residual; False: the model's
    logits and `optim.cross_entropy_loss` under plain autodiff (the reference).
  chunk_length: with fused_output, the logits are formed this many target positions at a time
    (None: all at once; a length that is not a multiple is padded with weight-0 positions).
    Bounds the float32 logits in the step to batch × chunk_length × vocab (a quarter of the
    [batch × length × vocab] array at the GPU goal's 512 targets).
  float32_logits: with fused_output, the logits matmul returns float32 (default); False: the
    activation dtype (T5X's tied v1.0 layer), converted to float32 for the loss.
  """

  z_loss: float = 1e-4
  label_smoothing: float = 0.0
  fused_output: bool = True
  chunk_length: int | None = 128
  float32_logits: bool = True


class Trainer:
  """Sharded training and evaluation of one T5 model."""

  def __init__(self, config: t5.T5Config, optimizer: optax.GradientTransformation, mesh: Mesh,
               seed: int = 0, loss_config: LossConfig | None = None,
               learning_rate_fn: Callable | None = None):
    self.config = config
    self.model = t5.Transformer(config)
    self.optimizer = optimizer
    self.mesh = mesh
    self.seed = seed
    self.loss_config = loss_config or LossConfig()
    self.learning_rate_fn = learning_rate_fn
    self.param_shardings = partitioning.logical_to_sharding(t5.params_logical_axes(config), mesh)
    self.replicated = partitioning.replicated(mesh)
    opt_shardings = jax.tree.map(lambda _: self.replicated,
                                 jax.eval_shape(optimizer.init, t5.params_shapes(config)))
    self.state_shardings = TrainState(step=self.replicated, params=self.param_shardings,
                                      opt_state=opt_shardings)
    self.batch_sharding = partitioning.batch_sharding(mesh)
    self._train_step = jax.jit(self._train_step_impl,
                               in_shardings=(self.state_shardings, self.batch_sharding),
                               out_shardings=(self.state_shardings, self.replicated),
                               donate_argnums=(0,))
    self._eval_step = jax.jit(self._eval_step_impl,
                              in_shardings=(self.param_shardings, self.batch_sharding),
                              out_shardings=self.replicated)
    self._logits = jax.jit(self._logits_impl,
                           in_shardings=(self.param_shardings, self.batch_sharding),
                           out_shardings=self.batch_sharding)

  # ----------------------------------------------------------------------------------------------
  def init_params(self, seed: int | None = None) -> Any:
    """Default-initialised params, created directly with their shardings."""
    seed = self.seed if seed is None else seed
    with jax.set_mesh(self.mesh):
      return jax.jit(lambda: t5.init_params(self.config, seed),
                     out_shardings=self.param_shardings)()

  def create_state(self, params: Any | None = None) -> TrainState:
    """A step-0 state from `params` (placed onto the mesh) or a fresh initialisation."""
    if params is None:
      params = self.init_params()
    else:
      params = jax.device_put(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params),
                              self.param_shardings)
    with jax.set_mesh(self.mesh):
      opt_state = jax.jit(self.optimizer.init, out_shardings=self.state_shardings.opt_state)(
          params)
    step = jax.device_put(jnp.asarray(0, jnp.int32), self.replicated)
    return TrainState(step=step, params=params, opt_state=opt_state)

  # ----------------------------------------------------------------------------------------------
  def _forward(self, params, batch: Batch, deterministic: bool, rng=None,
               return_hidden: bool = False):
    rngs = None if deterministic else {"dropout": rng}
    return self.model.apply(
        {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
        batch["decoder_target_tokens"], batch.get("encoder_segment_ids"),
        batch.get("decoder_segment_ids"), deterministic=deterministic, rngs=rngs,
        return_hidden=return_hidden)

  @staticmethod
  def _weights(batch: Batch):
    weights = batch.get("decoder_loss_weights")
    if weights is None:
      return (batch["decoder_target_tokens"] > 0).astype(jnp.float32)
    return weights.astype(jnp.float32)

  def _loss_and_metrics(self, logits, batch: Batch):
    """Summed loss and metric sums from full float32 logits (the unfused reference)."""
    targets, weights = batch["decoder_target_tokens"], self._weights(batch)
    loss, z_loss, _ = optim.cross_entropy_loss(logits, targets, weights,
                                               z_loss=self.loss_config.z_loss,
                                               label_smoothing=self.loss_config.label_smoothing)
    correct = jnp.sum((jnp.argmax(logits, -1) == targets) * weights)
    num_tokens = jnp.sum(weights)
    return loss, {"loss": loss, "z_loss": z_loss, "correct": correct, "num_tokens": num_tokens}

  def _model_loss(self, params, batch: Batch, deterministic: bool, rng=None):
    """Summed loss and metric sums of the model on `batch` (fused or not: see LossConfig)."""
    cfg = self.loss_config
    if not cfg.fused_output:
      return self._loss_and_metrics(self._forward(params, batch, deterministic, rng), batch)
    targets, weights = batch["decoder_target_tokens"], self._weights(batch)
    hidden = self._forward(params, batch, deterministic, rng, return_hidden=True)
    loss, z_loss, correct = logits_loss.output_cross_entropy(
        hidden, t5.output_kernel(params, self.config), targets, weights, self.config,
        z_loss=cfg.z_loss, label_smoothing=cfg.label_smoothing, chunk_length=cfg.chunk_length,
        float32_logits=cfg.float32_logits)
    num_tokens = jnp.sum(weights)
    return loss, {"loss": loss, "z_loss": z_loss, "correct": correct, "num_tokens": num_tokens}

  def _train_step_impl(self, state: TrainState, batch: Batch):
    rng = jax.random.fold_in(jax.random.PRNGKey(self.seed), state.step)

    def loss_fn(params):
      return self._model_loss(params, batch, self.config.dropout_rate == 0, rng)

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if self.learning_rate_fn is not None:
      metrics["learning_rate"] = self.learning_rate_fn(state.step)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  def _eval_step_impl(self, params, batch: Batch):
    return self._model_loss(params, batch, deterministic=True)[1]

  def _logits_impl(self, params, batch: Batch):
    return self._forward(params, batch, deterministic=True)

  # ----------------------------------------------------------------------------------------------
  def shard_batch(self, batch: dict[str, np.ndarray]) -> Batch:
    """This host's examples → global arrays split over "data" (model features only)."""
    batch = {k: v for k, v in batch.items() if k in MODEL_FEATURES}
    return partitioning.host_local_to_global(batch, self.mesh)

  def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
    with jax.set_mesh(self.mesh):
      return self._train_step(state, batch)

  def eval_step(self, params, batch: Batch) -> dict:
    with jax.set_mesh(self.mesh):
      return self._eval_step(params, batch)

  def logits(self, params, batch: Batch) -> jax.Array:
    with jax.set_mesh(self.mesh):
      return self._logits(params, batch)


def summarize(metrics: dict) -> dict[str, float]:
  """Device metrics (sums) → loss per token and token accuracy as Python floats."""
  values = {k: float(v) for k, v in jax.device_get(metrics).items()}
  tokens = max(values.pop("num_tokens", 0.0), 1.0)
  correct = values.pop("correct", 0.0)
  out = {"loss": values.pop("loss") / tokens, "accuracy": correct / tokens,
         "z_loss": values.pop("z_loss", 0.0) / tokens, "num_tokens": tokens}
  out.update(values)
  return out


def accumulate(total: dict | None, metrics: dict) -> dict:
  metrics = jax.device_get(metrics)
  if total is None:
    return {k: np.asarray(v, np.float64) for k, v in metrics.items()}
  return {k: total[k] + np.asarray(v, np.float64) for k, v in metrics.items()}
