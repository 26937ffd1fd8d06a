"""A vectorised encoder-decoder feature converter: seqio's EncDecFeatureConverter, batch at a time.

`seqio.EncDecFeatureConverter` runs several small functions per example (length checks, trim/pad,
the autoregressive shift, loss weights; for packing a `tf.while_loop` over every example). On CPU a
tf.data function call costs tens of microseconds whatever it does, so per-example maps, not the
arithmetic, bound the pipeline. `BatchedEncDecFeatureConverter` gathers examples into padded
batches, does all of that work on whole [batch, length] tensors in one function call per batch,
and unbatches again. Its output is the same dataset as seqio's converter gives for the same input:
same keys (in the same order), dtypes, static shapes, values and example order, packed or not.

Packing follows seqio's algorithm exactly: examples are taken in windows of max(feature lengths)
(seqio packs `padded_batch(max(lengths))` windows independently, so a packed row never holds
examples from two windows); within a window it fills rows greedily in order, starting a new row
when the next example does not fit in either feature. An example's packed length is its number of
non-zero ids (after truncation to the feature length), as in seqio. The greedy row boundaries are
found without a sequential loop: for every example i the first example that does not fit in a row
starting at i follows from searchsorted on the cumulative lengths, and the rows' first examples
(the orbit of example 0 under that map) come from pointer doubling.

Use it wherever seqio's converter goes, e.g.
`seqio.get_dataset(task, lengths, BatchedEncDecFeatureConverter(pack=True), batch_size=128)`, or
as a T5X `feature_converter_cls`.
"""

from __future__ import annotations

from typing import Mapping, Optional

import seqio
import tensorflow as tf

_FEATURES = ("inputs", "targets")
DEFAULT_BATCH_SIZE = 256


def _dense(tensor):
  return tensor.to_tensor() if isinstance(tensor, tf.RaggedTensor) else tensor


def _pad_to(tokens: tf.Tensor, length: int) -> tf.Tensor:
  """[n, m] → [n, length]: truncates or zero-pads the last axis."""
  tokens = tokens[:, :length]
  tokens = tf.pad(tokens, [[0, 0], [0, length - tf.shape(tokens)[1]]])
  return tf.ensure_shape(tokens, [None, length])


def _shift_right(tokens: tf.Tensor, first: int) -> tf.Tensor:
  """[n, L] → [n, L]: each row shifted right by one, `first` in column 0."""
  column = tf.fill([tf.shape(tokens)[0], 1], tf.constant(first, tokens.dtype))
  return tf.concat([column, tokens[:, :-1]], axis=1)


def autoregressive_inputs(targets: tf.Tensor, segment_ids: Optional[tf.Tensor],
                          bos_id: int) -> tf.Tensor:
  """Decoder inputs of [n, L] targets, as `seqio.utils.make_autoregressive_inputs` per row.

  Args:
    targets: [n, L] int32 target ids.
    segment_ids: [n, L] segment ids of packed rows, or None (unpacked).
    bos_id: id fed at the first position of every sequence.

  Returns:
    [n, L] int32: targets shifted right by one, `bos_id` where a segment starts.
  """
  inputs = _shift_right(targets, bos_id)
  if segment_ids is None:
    return inputs
  # As seqio: a position is a segment start when its id differs from the previous position's
  # (position 0 compares with 0).
  starts = tf.not_equal(segment_ids, _shift_right(segment_ids, 0))
  return tf.where(starts, tf.constant(bos_id, inputs.dtype), inputs)


def _exclusive_cumsum(lengths: tf.Tensor) -> tf.Tensor:
  """[n] → [n + 1]: 0, l0, l0 + l1, …"""
  return tf.concat([tf.zeros([1], lengths.dtype), tf.cumsum(lengths)], axis=0)


def greedy_row_starts(lengths: Mapping[str, tf.Tensor], capacities: Mapping[str, int],
                      max_examples: int) -> tf.Tensor:
  """First example of every packed row of a window, as seqio's greedy packing chooses them.

  Examples are placed in order; an example starts a new row when adding it to the current row
  would exceed the capacity of any feature.

  Args:
    lengths: feature → [n] int32 lengths (each <= its capacity), the same n for every feature.
    capacities: feature → row length.
    max_examples: an upper bound on n (the window size).

  Returns:
    [num_rows] int32, increasing, starting with 0 (n >= 1).
  """
  n = tf.shape(next(iter(lengths.values())))[0]
  # next_start[i]: the first example that does not fit in a row whose first example is i,
  # = min over features of (largest j with cum[j] <= cum[i] + capacity); i < next_start[i] <= n
  # for i < n, and next_start[n] = n ends every orbit.
  next_start = None
  for key, length in lengths.items():
    cumulative = _exclusive_cumsum(length)
    ends = tf.searchsorted(cumulative, cumulative + capacities[key], side="right") - 1
    next_start = ends if next_start is None else tf.minimum(next_start, ends)
  # Row k starts at next^k(0): compose jumps of 2^b rows (binary lifting) for every k < n at once.
  row = tf.range(n)
  start = tf.zeros([n], tf.int32)
  jump = next_start
  for bit in range(max(1, (max_examples - 1).bit_length())):
    take = tf.not_equal(tf.bitwise.bitwise_and(row, 1 << bit), 0)
    start = tf.where(take, tf.gather(jump, start), start)
    jump = tf.gather(jump, jump)
  return tf.boolean_mask(start, start < n)


def pack_window(window: Mapping[str, tf.Tensor], lengths: Mapping[str, int],
                max_examples: int) -> dict[str, tf.Tensor]:
  """Packs one window of examples exactly as `seqio.utils.trim_and_pack_dataset` (TF ops).

  Args:
    window: feature → [n, m] int32 zero-padded ids (any m; truncated to the feature length).
    lengths: feature → packed row length.
    max_examples: an upper bound on n (the window size).

  Returns:
    feature → [rows, L], plus `<feature>_segment_ids` and `<feature>_positions` [rows, L] int32.
  """
  tokens, example_lengths = {}, {}
  for key, length in lengths.items():
    ids = tf.cast(window[key][:, :length], tf.int32)
    tokens[key] = ids
    # seqio keeps the first count_nonzero(ids) ids of each example.
    example_lengths[key] = tf.math.count_nonzero(ids, axis=1, dtype=tf.int32)
  starts = greedy_row_starts(example_lengths, lengths, max_examples)
  n = tf.shape(next(iter(tokens.values())))[0]
  # Row r holds examples starts[r] .. starts[r + 1] - 1: a contiguous run of the window's
  # concatenated ids, so each feature's rows are a ragged view of them.
  row_starts = tf.concat([starts, n[None]], axis=0)
  packed = {}
  for key, length in lengths.items():
    ids, example_length = tokens[key], example_lengths[key]
    examples = tf.RaggedTensor.from_tensor(ids, lengths=example_length)
    splits = tf.gather(examples.row_splits, row_starts)
    packed_ids = tf.RaggedTensor.from_row_splits(examples.flat_values, splits, validate=False)
    positions = tf.ragged.range(example_length).flat_values
    packed_positions = tf.RaggedTensor.from_row_splits(positions, splits, validate=False)
    packed_ids = packed_ids.to_tensor(shape=[None, length])
    packed_positions = packed_positions.to_tensor(shape=[None, length])
    packed[key] = packed_ids
    packed[key + "_positions"] = packed_positions
    # seqio's definition: count of position-0 entries so far, zeroed where the id is 0.
    packed[key + "_segment_ids"] = (
        tf.cumsum(tf.cast(tf.equal(packed_positions, 0), tf.int32), axis=1)
        * tf.cast(tf.not_equal(packed_ids, 0), tf.int32))
  return packed


class BatchedEncDecFeatureConverter(seqio.EncDecFeatureConverter):
  """`seqio.EncDecFeatureConverter`, computed on batches of examples (same output dataset).

  Attributes (beyond seqio's):
    batch_size: examples converted per function call when not packing (packing always works on
      windows of max(feature lengths) examples, as seqio does, so that rows are identical).
  """

  def __init__(self, pack: bool = True, use_custom_packing_ops: bool = False,
               apply_length_check: bool = True, bos_id: int = 0,
               passthrough_features: Optional[
                   Mapping[str, seqio.FeatureConverter.FeatureSpec]] = None,
               batch_size: int = DEFAULT_BATCH_SIZE):
    """Creates the converter; arguments as `seqio.EncDecFeatureConverter`, plus `batch_size`.

    Args:
      pack: pack examples into rows (seqio's greedy packing) instead of padding each.
      use_custom_packing_ops: unsupported (seqio's custom ops pack differently); must be False.
      apply_length_check: check that the task features are no longer than their lengths (else
        longer ones are truncated, as seqio does).
      bos_id: decoder input id at the start of every target sequence.
      passthrough_features: unsupported; must be None.
      batch_size: examples per internal batch when unpacked.

    Raises:
      ValueError: for the unsupported options, or batch_size < 1.
    """
    if use_custom_packing_ops:
      raise ValueError("BatchedEncDecFeatureConverter packs with its own TF ops; "
                       "use_custom_packing_ops=True is not supported")
    if passthrough_features:
      raise ValueError("BatchedEncDecFeatureConverter does not support passthrough_features; "
                       "use seqio.EncDecFeatureConverter")
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    super().__init__(pack=pack, use_custom_packing_ops=False,
                     apply_length_check=apply_length_check, bos_id=bos_id)
    self.batch_size = batch_size

  def __call__(self, ds: tf.data.Dataset,
               task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    """Converts task features ("inputs", "targets") of unbatched `ds` into model features.

    Same checks as seqio's converter: `task_feature_lengths` must name exactly inputs and
    targets; `ds` must hold them as int32 vectors (other features are dropped); with
    `apply_length_check`, a feature longer than its length fails the pipeline with seqio's
    message. Output lengths hold by construction (static shapes).

    Args:
      ds: unbatched examples, e.g. a Task's dataset.
      task_feature_lengths: {"inputs": L_in, "targets": L_tgt}.

    Returns:
      The unbatched model-feature dataset.
    """
    if set(task_feature_lengths) != set(_FEATURES):
      raise ValueError(f"task_feature_lengths must have exactly the keys {list(_FEATURES)}, "
                       f"got {sorted(task_feature_lengths)}")
    lengths = {k: int(task_feature_lengths[k]) for k in _FEATURES}
    spec = ds.element_spec
    if not isinstance(spec, Mapping):
      raise ValueError(f"expected a dataset of feature dicts, got element_spec {spec}")
    for key in _FEATURES:
      if key not in spec:
        raise ValueError(f"Dataset is missing an expected feature during input_validation "
                         f"validation: '{key}'. Received {spec}.")
      if spec[key].dtype != tf.int32:
        raise ValueError(f"Dataset has incorrect type for feature '{key}' during "
                         f"input_validation validation: Got {spec[key].dtype.name}, "
                         "expected int32")
      if spec[key].shape.rank != 1:
        raise ValueError(f"Dataset has incorrect rank for feature '{key}' during "
                         f"input_validation validation: Got {spec[key].shape.rank}, expected 1")
    # Packing works on seqio's windows of max(lengths) examples, so that rows are the same.
    window = max(lengths.values()) if self.pack else self.batch_size
    specs = tf.nest.flatten(spec)
    if all(isinstance(s, tf.TensorSpec) for s in specs):
      ds = ds.padded_batch(window)  # Extras are padded too and dropped per batch.
    elif all(isinstance(s, tf.RaggedTensorSpec) or s.shape.is_fully_defined() for s in specs):
      # Ragged features (e.g. the streamed sources' rows) batch natively; padded per batch.
      ds = ds.batch(window).map(lambda b: {k: _dense(b[k]) for k in _FEATURES},
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
      # Mixed dense and ragged: padded_batch takes dense features only, so select (and densify)
      # the task features per example.
      ds = ds.map(lambda ex: {k: _dense(ex[k]) for k in _FEATURES},
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).padded_batch(window)
    if self.pack:
      convert = lambda batch: self._convert_packed(batch, lengths, window)
    else:
      convert = lambda batch: self._convert_padded(batch, lengths)
    ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.unbatch()

  def _check_input_lengths(self, batch: Mapping[str, tf.Tensor],
                           lengths: Mapping[str, int]) -> dict[str, tf.Tensor]:
    """seqio's input validation (length <= task feature length), on a padded batch."""
    checked = {}
    for key in _FEATURES:
      tokens = tf.convert_to_tensor(batch[key])
      if self._apply_length_check:
        check = tf.debugging.assert_less_equal(
            tf.shape(tokens, out_type=tf.int64)[1], tf.constant(lengths[key], tf.int64),
            message=(f"Feature '{key}' has length not less than or equal to the expected "
                     f"length of {lengths[key]} during input_validation validation"))
        with tf.control_dependencies([check]):
          tokens = tf.identity(tokens)
      checked[key] = tokens
    return checked

  def _model_features(self, inputs: tf.Tensor, targets: tf.Tensor,
                      packed: Optional[Mapping[str, tf.Tensor]]) -> dict[str, tf.Tensor]:
    """The model features of [n, L] rows, keys in seqio's order."""
    segment_ids = None if packed is None else packed["targets_segment_ids"]
    features = {
        "encoder_input_tokens": inputs,
        "decoder_target_tokens": targets,
        "decoder_input_tokens": autoregressive_inputs(targets, segment_ids, self.bos_id),
        "decoder_loss_weights": tf.cast(tf.not_equal(targets, 0), tf.int32),
    }
    if packed is not None:
      for suffix in ("_segment_ids", "_positions"):
        for key, prefix in (("inputs", "encoder"), ("targets", "decoder")):
          features[prefix + suffix] = packed[key + suffix]
    return features

  def _convert_padded(self, batch: Mapping[str, tf.Tensor],
                      lengths: Mapping[str, int]) -> dict[str, tf.Tensor]:
    batch = self._check_input_lengths(batch, lengths)
    return self._model_features(_pad_to(batch["inputs"], lengths["inputs"]),
                                _pad_to(batch["targets"], lengths["targets"]), None)

  def _convert_packed(self, batch: Mapping[str, tf.Tensor], lengths: Mapping[str, int],
                      window: int) -> dict[str, tf.Tensor]:
    batch = self._check_input_lengths(batch, lengths)
    packed = pack_window(batch, lengths, window)
    return self._model_features(packed["inputs"], packed["targets"], packed)
