"""Malformed and non-UTF-8 lines of the `*_files` data sources: the error names file and line."""

import pytest
import tensorflow as tf

from synthetic_pretraining.data import synthetic_sources as ss


@pytest.mark.parametrize("bad", [b"[4\xff]\t[5]", b"\xfe\xff", b"[1, 2]\t[3]\xc3", b"[1, 2]\t[3, \xe2\x82]"])
@pytest.mark.parametrize("targets_only", [False, True])
def test_non_utf8_line_names_file_and_line(tmp_path, bad, targets_only):
  (tmp_path / "set").mkdir()
  path = tmp_path / "set" / "train.txt"
  path.write_bytes(b"[]\t[3]\n[]\t[4, 5]\n" + bad + b"\n[]\t[6]\n")  # Valid in both modes.
  ds = ss.SyntheticFileSource("set", str(tmp_path), targets_only=targets_only).get_dataset("train")
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    list(ds.as_numpy_iterator())
  message = info.value.message  # Must itself be readable text.
  assert f"{path}:3: malformed line" in message
  assert "\ufffd" in message  # The bad bytes are shown as U+FFFD.
