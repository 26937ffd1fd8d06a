"""notebooks/checkpoint_statistics.ipynb executes on tiny checkpoints the test writes."""

import csv
import pathlib

import jax
import numpy as np
import pytest

from synthetic_pretraining.experiments import checkpoint_analysis as ca
from synthetic_pretraining.model import t5
from synthetic_pretraining.train import checkpoints
from synthetic_pretraining.train import init_stats
from tests.experiments import notebook_utils

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "checkpoint_statistics.ipynb"
FIGURES = ("ln_scale_mean_per_layer.png", "kernel_std_per_layer.png", "relpos_bias.png",
           "ln_scale_mean_minus_random.png", "kernel_std_ratio_to_random.png",
           "kernel_rel_l2_to_random.png")


def _perturbed(seed, ln_value, kernel_factor):
  """Tiny-model params: pre-attention LN scales = ln_value(layer), kernels × kernel_factor."""
  flat = init_stats.flatten_params(jax.device_get(t5.init_params(t5.get_config("tiny"), seed)))
  out = {}
  for name, value in flat.items():
    value = np.array(value, np.float32)
    info = ca.describe_param(name)
    if info.role in ("pre_self_attn_ln", "pre_cross_attn_ln"):
      value[:] = ln_value(info.layer)
    elif info.family in ("attention", "mlp"):
      value *= kernel_factor
    out[name] = value
  return init_stats.unflatten_params(out)


def test_notebook_is_stored_without_outputs():
  code = notebook_utils.assert_stored_without_outputs(NOTEBOOK)
  assert "SP_ANALYSIS_CHECKPOINTS" in code[0].source


@pytest.mark.slow
def test_notebook_executes_and_writes_its_figures(tmp_path, monkeypatch):
  set_dir = tmp_path / "set_run"
  writer = checkpoints.Checkpointer(str(set_dir))
  writer.save(20, {"params": _perturbed(1, lambda layer: 0.25 * (layer + 1), 0.5)}, force=True)
  writer.close()
  identity = tmp_path / "identity.npz"
  init_stats.save_npz_params(str(identity), _perturbed(2, lambda layer: 2.0, 3.0))
  out_dir = tmp_path / "out"
  text, markdown, displays = notebook_utils.execute(NOTEBOOK, tmp_path, monkeypatch, {
      "SP_ANALYSIS_CHECKPOINTS": f"set={set_dir},identity={identity}", "SP_ANALYSIS_MODEL": "",
      "SP_ANALYSIS_OUT": str(out_dir)})
  shapes = t5.params_shapes(t5.get_config("tiny"))
  n_tensors, n_params = len(init_stats.flatten_params(shapes)), t5.count_params(shapes)
  assert f"set: {n_tensors} tensors, {n_params:,} parameters ({set_dir})" in text
  assert "random_init: seed 0, T5Config(vocab_size=384, emb_dim=64" in text
  assert "| pre_attention_ln mean | set | identity | random_init |" in markdown
  assert "| decoder 1 | 0.5 | 2 | 1 |" in markdown
  images = [o for o in displays if "image/png" in o.data]
  assert len(images) == len(FIGURES)
  for name in FIGURES:
    assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

  with open(out_dir / "layer_stats.csv", newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["selection"] == "pre_self_attn_ln"]
  means = {(r["checkpoint"], r["stack"], int(r["layer"])): float(r["mean"]) for r in rows}
  assert means[("set", "encoder", 0)] == 0.25 and means[("set", "decoder", 1)] == 0.5
  assert means[("identity", "encoder", 1)] == 2.0 and means[("random_init", "decoder", 0)] == 1.0
  with open(out_dir / "layer_difference_to_reference.csv", newline="") as f:
    rel = {(r["checkpoint"], r["stack"], r["layer"]): float(r["rel_l2"])
           for r in csv.DictReader(f)}
  assert sorted({c for c, _, _ in rel}) == ["identity", "set"]
