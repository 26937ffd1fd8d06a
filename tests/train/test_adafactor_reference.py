"""optim.adafactor (the trainer's optimiser) against a NumPy re-statement of T5X's Adafactor.

The reference is written from Adafactor's documented rules (Shazeer & Stern 2018; T5X
`adafactor.py` defaults as SPEC §5.2 lists them), not from optax:
  t = step + 1 (step counts from 0); decay β2(t) = 1 − t^(−0.8)
  G2 = g² + ε1 (ε1 = 1e-30)
  factored (rank ≥ 2 and the two largest dims ≥ 128): R ← β2 R + (1−β2)·mean over columns of G2,
    C ← β2 C + (1−β2)·mean over rows of G2, V̂ = R Cᵀ / mean(R); otherwise V ← β2 V + (1−β2)·G2
  u = g / √V̂;  u ← u / max(1, RMS(u) / d) (update clipping, d = 1.0)
  Δ = −lr(step) · max(ε2, RMS(param)) · u  (multiply_by_parameter_scale, ε2 = 1e-3);
  no momentum (β1 None), no weight decay.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from synthetic_pretraining.train import optim

SHAPES = {"kernel": (256, 128), "narrow": (256, 127), "vector": (128,), "tiny_vector": (64,)}


def lr_fn(step):
  return 0.01 / (1.0 + step)  # Step-dependent, so the step indexing is checked too.


def _rms(x):
  return np.sqrt(np.mean(np.square(x)))


class ReferenceAdafactor:
  """T5X Adafactor in float64 NumPy; `settings` may be changed to show the test's power."""

  def __init__(self, params, decay_rate=0.8, clipping_threshold=1.0, epsilon1=1e-30,
               epsilon2=1e-3, min_dim_size_to_factor=128, multiply_by_parameter_scale=True,
               momentum=None):
    self.decay_rate, self.clip, self.eps1, self.eps2 = decay_rate, clipping_threshold, epsilon1, epsilon2
    self.min_dim, self.param_scale, self.momentum = (min_dim_size_to_factor,
                                                     multiply_by_parameter_scale, momentum)
    self.step = 0
    self.state = {}
    for name, p in params.items():
      if self.factored(p.shape):
        self.state[name] = {"row": np.zeros(p.shape[0]), "col": np.zeros(p.shape[1])}
      else:
        self.state[name] = {"v": np.zeros(p.shape)}
      if momentum is not None:
        self.state[name]["m"] = np.zeros(p.shape)
    self.clipped = set()
    self.floored = set()

  def factored(self, shape):
    return len(shape) == 2 and min(shape) >= self.min_dim

  def update(self, grads, params):
    t = self.step + 1
    beta2 = 1.0 - t ** (-self.decay_rate)
    lr = lr_fn(self.step)
    new_params = {}
    for name, g in grads.items():
      g = np.asarray(g, np.float64)
      p = np.asarray(params[name], np.float64)
      s = self.state[name]
      g2 = g * g + self.eps1
      if "row" in s:
        s["row"] = beta2 * s["row"] + (1 - beta2) * g2.mean(axis=1)
        s["col"] = beta2 * s["col"] + (1 - beta2) * g2.mean(axis=0)
        v_hat = np.outer(s["row"], s["col"]) / s["row"].mean()
      else:
        s["v"] = beta2 * s["v"] + (1 - beta2) * g2
        v_hat = s["v"]
      u = g / np.sqrt(v_hat)
      if self.clip is not None:
        if _rms(u) > self.clip:
          self.clipped.add((name, t))
        u = u / max(1.0, _rms(u) / self.clip)
      scale = lr
      if self.param_scale:
        if _rms(p) < self.eps2:
          self.floored.add(name)
        scale *= max(self.eps2, _rms(p))
      u = scale * u
      if self.momentum is not None:
        s["m"] = self.momentum * s["m"] + (1 - self.momentum) * u
        u = s["m"]
      new_params[name] = p - u
    self.step += 1
    return new_params


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  params = {name: rng.normal(0, 0.05, shape) for name, shape in SHAPES.items()}
  params["tiny_vector"] *= 1e-3  # RMS below ε2: the parameter scale is floored at 1e-3.
  # Heavy-tailed gradients, 10x larger at step 2, so update clipping is exercised.
  grads = [{name: rng.standard_t(3, shape) * (10.0 if step == 1 else 1.0) * (1 + 3 * (
      np.arange(shape[0])[:, None] % 7 if len(shape) == 2 else 0))
            for name, shape in SHAPES.items()} for step in range(3)]
  return params, grads


def _run_optax(tx, params, grads):
  params = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
  state = tx.init(params)
  init_state = state
  for g in grads:
    updates, state = tx.update({k: jnp.asarray(v, jnp.float32) for k, v in g.items()}, state,
                               params)
    params = optax.apply_updates(params, updates)
  return {k: np.asarray(v, np.float64) for k, v in params.items()}, init_state, state


def _run_reference(params, grads, **settings):
  ref = ReferenceAdafactor(params, **settings)
  for g in grads:
    params = ref.update(g, params)
  return params, ref


def _close(a, b):
  return all(np.allclose(a[k], b[k], rtol=2e-5, atol=1e-9) for k in a)


def test_trainer_adafactor_equals_the_t5x_reference_for_three_steps():
  params, grads = _problem()
  got, _, _ = _run_optax(optim.adafactor(lr_fn), params, grads)
  want, ref = _run_reference(params, grads)
  assert ref.clipped, "the problem must exercise update clipping"
  assert ref.floored == {"tiny_vector"}, "the problem must exercise the ε2 floor"
  for name in SHAPES:
    np.testing.assert_allclose(got[name], want[name], rtol=2e-5, atol=1e-9, err_msg=name)
    assert not np.allclose(got[name], params[name])  # Every parameter moved.


@pytest.mark.parametrize("wrong", [
    {"decay_rate": 0.9}, {"decay_rate": 0.5}, {"clipping_threshold": None},
    {"clipping_threshold": 2.0}, {"epsilon2": 1e-5}, {"multiply_by_parameter_scale": False},
    {"min_dim_size_to_factor": 127}, {"min_dim_size_to_factor": 129}, {"momentum": 0.9},
    {"epsilon1": 1e-2}])
def test_the_comparison_detects_each_wrong_setting(wrong):
  """Power check: the reference with one SPEC §5.2 setting changed differs from the trainer's."""
  params, grads = _problem()
  got, _, _ = _run_optax(optim.adafactor(lr_fn), params, grads)
  want, _ = _run_reference(params, grads, **wrong)
  assert not _close(got, want)


def _state_leaves(state):
  """(path, shape) of the optimiser state's arrays, keyed by parameter name and entry."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    keys = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path]
    out[tuple(str(k) for k in keys)] = tuple(np.shape(leaf))
  return out


def test_state_is_factored_exactly_for_matrices_with_two_dims_of_at_least_128():
  params, _ = _problem()
  _, state, _ = _run_optax(optim.adafactor(lr_fn), params, [])
  leaves = _state_leaves(state)
  # Full second moments only for the unfactored parameters; factored row/col vectors for the kernel.
  full = {k[-1]: shape for k, shape in leaves.items() if k[-2:-1] == ("v",)}
  rows = {k[-1]: shape for k, shape in leaves.items() if k[-2:-1] == ("v_row",)}
  cols = {k[-1]: shape for k, shape in leaves.items() if k[-2:-1] == ("v_col",)}
  assert full["narrow"] == (256, 127) and full["vector"] == (128,)
  assert full["tiny_vector"] == (64,)
  assert int(np.prod(full["kernel"])) <= 1  # No full [256, 128] second moment is kept.
  assert {rows["kernel"], cols["kernel"]} == {(256,), (128,)}
  for name in ("narrow", "vector", "tiny_vector"):
    assert int(np.prod(rows[name])) <= 1 and int(np.prod(cols[name])) <= 1, name
  # No momentum buffer: nothing else of parameter size in the state.
  big = [k for k, shape in leaves.items() if int(np.prod(shape)) >= 64]
  assert len(big) == 5, big  # kernel row + col, narrow v, vector v, tiny_vector v.


def test_defaults_are_spec_5_2():
  import inspect  # pylint: disable=g-import-not-at-top
  defaults = {k: v.default for k, v in inspect.signature(optim.adafactor).parameters.items()}
  assert defaults == {"learning_rate": inspect.Parameter.empty, "decay_rate": 0.8,
                      "clipping_threshold": 1.0, "min_dim_size_to_factor": 128,
                      "multiply_by_parameter_scale": True, "epsilon1": 1e-30, "momentum": None}
