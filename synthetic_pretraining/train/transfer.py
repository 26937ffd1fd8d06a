"""Weight transfer from a pre-trained checkpoint into a freshly initialised model (SPEC §5.4).

Modes:
  `all`                the whole parameter tree comes from the checkpoint, token embedding included
                       (the release scripts' `is_sanity_check_load_weights=True`).
  `all_but_embedding`  everything except the vocabulary-sized tensors — `token_embedder/embedding`
                       and, for T5 v1.1, `decoder/logits_dense/*` — which keep their fresh init
                       (the authors' `is_load_everything_but_embed=True`; the default, as used for
                       synthetic checkpoints).
  `from_scratch`       the fresh init unchanged.

Vocabulary size. A checkpoint whose vocabulary differs from the downstream model's (e.g. one
pre-trained with a small offline vocabulary) transfers cleanly with `all_but_embedding`. With
`all` it raises an error that suggests `all_but_embedding`, unless `allow_vocab_resize=True`, which
copies the rows (embedding) / columns (logits_dense) the two vocabularies share — ids
0..min(V_ckpt, V_model)−1 — and keeps the fresh init for the rest. Any other difference (a missing,
extra or differently shaped parameter) raises an error naming every such parameter.

Gin: bind `initial_params_from_checkpoint.checkpoint_path`, `.step`, `.mode` and
`.allow_vocab_resize` (checkpoint_path None or "from_scratch" with mode `from_scratch` is a
from-scratch run, as in the release's `ckpt=from_scratch`).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import gin
import numpy as np

from synthetic_pretraining.train import t5x_import

MODES = ("all", "all_but_embedding", "from_scratch")
DEFAULT_MODE = "all_but_embedding"
FROM_SCRATCH_PATH = "from_scratch"

# Vocabulary-sized parameters and the axis that indexes the vocabulary.
_VOCAB_AXIS = {"token_embedder/embedding": 0, "decoder/logits_dense/kernel": -1}
_VOCAB_PREFIXES = ("token_embedder/", "decoder/logits_dense/")


def is_embedding_param(name: str) -> bool:
  """True for the tensors `all_but_embedding` leaves at their fresh init."""
  return name.startswith(_VOCAB_PREFIXES)


def _unboxed(leaf: Any) -> Any:
  return leaf.unbox() if hasattr(leaf, "unbox") and hasattr(leaf, "replace_boxed") else leaf


def _rebox(fresh_leaf: Any, value: np.ndarray) -> Any:
  """Keeps flax partitioning metadata (nn.Partitioned) around a transferred value."""
  if hasattr(fresh_leaf, "unbox") and hasattr(fresh_leaf, "replace_boxed"):
    return fresh_leaf.replace_boxed(value)
  return value


def _resized_vocab_copy(name: str, fresh: Any, ckpt: np.ndarray) -> np.ndarray | None:
  """Fresh init with the shared vocabulary slice copied in, or None if not a vocab-only change."""
  axis = _VOCAB_AXIS.get(name)
  fresh_shape, ckpt_shape = np.shape(fresh), np.shape(ckpt)
  if axis is None or len(fresh_shape) != len(ckpt_shape):
    return None
  axis %= len(fresh_shape)
  if any(f != c for i, (f, c) in enumerate(zip(fresh_shape, ckpt_shape)) if i != axis):
    return None
  shared = min(fresh_shape[axis], ckpt_shape[axis])
  out = np.array(fresh, copy=True)
  index = [slice(None)] * len(fresh_shape)
  index[axis] = slice(0, shared)
  out[tuple(index)] = np.asarray(ckpt)[tuple(index)].astype(out.dtype)
  return out


@gin.configurable(denylist=["fresh_params", "ckpt_params"])
def transfer_weights(fresh_params: Mapping[str, Any], ckpt_params: Mapping[str, Any] | None,
                     mode: str = DEFAULT_MODE, allow_vocab_resize: bool = False) -> dict[str, Any]:
  """Returns a new tree: `fresh_params` with the leaves `mode` selects taken from `ckpt_params`.

  Args:
    fresh_params: the model's freshly initialised parameters (nested dict, T5X names).
    ckpt_params: the checkpoint's parameters (e.g. from `t5x_import.load_t5x_params`); may be None
      for `from_scratch`.
    mode: one of MODES.
    allow_vocab_resize: with mode `all`, copy the shared vocabulary rows when the checkpoint's
      vocabulary size differs instead of raising.

  Returns:
    A nested dict with the structure of `fresh_params`; transferred leaves are numpy arrays cast
    to the fresh leaf's dtype, the others are the fresh leaves themselves.

  Raises:
    ValueError: unknown mode, or parameters that cannot be transferred (all named).
  """
  if mode not in MODES:
    raise ValueError(f"unknown weight-transfer mode {mode!r}; expected one of {MODES}")
  fresh = t5x_import.flatten_params(fresh_params)
  if mode == "from_scratch":
    return t5x_import.unflatten_params(fresh)
  if ckpt_params is None:
    raise ValueError(f"weight-transfer mode {mode!r} needs checkpoint parameters")
  ckpt = t5x_import.flatten_params(ckpt_params)
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  skipped = lambda name: mode == "all_but_embedding" and is_embedding_param(name)  # pylint: disable=unnecessary-lambda-assignment
  keep_fresh = {n for n in fresh if skipped(n)}
  # The one shape comparison (checkpoints.shape_differences), over what is transferred.
  differences = checkpoints.shape_differences(
      {n: _unboxed(v) for n, v in fresh.items() if n not in keep_fresh},
      {n: v for n, v in ckpt.items() if not skipped(n)})
  problems, vocab_problems, out, resized = [], [], {}, {}
  for kind, name, want, got in differences:
    if kind == "shape":
      copy = _resized_vocab_copy(name, np.asarray(_unboxed(fresh[name])), ckpt[name])
      if copy is not None and allow_vocab_resize:
        resized[name] = copy
        continue
      if copy is not None:
        vocab_problems.append(f"  vocabulary size differs: {name}: checkpoint {got} vs model "
                              f"{want}")
        continue
    problems.append("  " + checkpoints.describe_difference(kind, name, want, got))
  for name, fresh_leaf in fresh.items():
    if name in keep_fresh or name not in ckpt:
      out[name] = fresh_leaf
    elif name in resized:
      out[name] = _rebox(fresh_leaf, resized[name])
    else:
      dtype = getattr(_unboxed(fresh_leaf), "dtype", np.float32)
      out[name] = _rebox(fresh_leaf, np.asarray(ckpt[name]).astype(dtype))
  if vocab_problems:
    problems += vocab_problems + [
        "  the checkpoint's vocabulary differs from the model's: use mode 'all_but_embedding' "
        "(embedding keeps its fresh init) or allow_vocab_resize=True (copies the shared rows)"]
  if problems:
    raise ValueError(f"cannot transfer weights (mode {mode!r}):\n" + "\n".join(problems))
  logging.info("weight transfer %s: %d of %d tensors from the checkpoint", mode,
               len(fresh) - len(keep_fresh), len(fresh))
  return t5x_import.unflatten_params(out)


@gin.configurable(denylist=["fresh_params"])
def initial_params_from_checkpoint(fresh_params: Mapping[str, Any],
                                   checkpoint_path: str | None = None, step: int | None = None,
                                   mode: str = DEFAULT_MODE,
                                   allow_vocab_resize: bool = False) -> dict[str, Any]:
  """Reads a T5X checkpoint (legacy or orbax) or a Hugging Face T5 folder and transfers its weights.

  Args:
    fresh_params: freshly initialised parameters.
    checkpoint_path: model dir, step dir or legacy index file (local or gs://); None or
      "from_scratch" only together with mode `from_scratch`.
    step: the step to read from a model dir (default: latest).
    mode: one of MODES.
    allow_vocab_resize: see `transfer_weights`.

  Returns:
    The parameters to start training from.
  """
  if mode not in MODES:
    raise ValueError(f"unknown weight-transfer mode {mode!r}; expected one of {MODES}")
  no_checkpoint = checkpoint_path in (None, "", FROM_SCRATCH_PATH)
  if mode == "from_scratch":
    if not no_checkpoint:
      logging.warning("mode from_scratch: ignoring checkpoint %s", checkpoint_path)
    return transfer_weights(fresh_params, None, mode="from_scratch")
  if no_checkpoint:
    raise ValueError(f"weight-transfer mode {mode!r} needs a checkpoint_path; bind "
                     "initial_params_from_checkpoint.mode = 'from_scratch' for a from-scratch run")
  if os.path.isfile(os.path.join(str(checkpoint_path), "config.json")):  # A Hugging Face folder.
    if step is not None:
      raise ValueError(f"{checkpoint_path} is a Hugging Face folder (one set of weights); "
                       f"step={step} does not apply")
    from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
    ckpt = checkpoints.load_params(str(checkpoint_path))
  else:
    ckpt = t5x_import.load_t5x_params(checkpoint_path, step=step)
  return transfer_weights(fresh_params, ckpt, mode=mode, allow_vocab_resize=allow_vocab_resize)
