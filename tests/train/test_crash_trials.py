"""`synthetic-pretraining crash-trials`: one SIGKILL-during-a-checkpoint-write trial, and the
bit-for-bit comparison it relies on."""

import numpy as np
import pytest

from synthetic_pretraining.train import crash_trials


def test_differing_arrays_sees_one_flipped_bit_shape_dtype_and_missing_arrays():
  a = {"p": np.arange(6, dtype=np.float32), "s": np.int32(3) * np.ones(()), "n": np.array([np.nan])}
  assert crash_trials.differing_arrays(a, {k: v.copy() for k, v in a.items()}) == []
  flipped = a["p"].copy()
  flipped.view(np.uint32)[2] ^= 1  # One ulp: allclose would not see it.
  assert np.allclose(flipped, a["p"])
  assert crash_trials.differing_arrays(a, {**a, "p": flipped}) == ["p"]
  assert crash_trials.differing_arrays(a, {**a, "p": a["p"].astype(np.float64)}) == ["p"]
  assert crash_trials.differing_arrays(a, {**a, "p": a["p"].reshape(2, 3)}) == ["p"]
  assert crash_trials.differing_arrays(a, {"p": a["p"], "s": a["s"]}) == ["n"]


@pytest.mark.slow
def test_one_trial_killed_during_a_checkpoint_write_is_bit_identical(tmp_path):
  lines = []
  results = crash_trials.crash_trials(1, steps=6, period=2, seed=3, work_dir=str(tmp_path),
                                      max_kills=1, kinds=(crash_trials.KILL_KINDS[0],),
                                      log=lines.append)
  (result,) = results
  assert result.kills == [crash_trials.KILL_KINDS[0]], lines  # Killed while writing.
  assert result.final_step == 6 and result.num_arrays > 100
  assert result.identical, lines
  assert lines[-2].startswith("1/1 trials bit-identical"), lines


def test_bad_arguments():
  with pytest.raises(SystemExit):
    crash_trials.main(["--trials", "0"])
  with pytest.raises(SystemExit):
    crash_trials.main(["--steps", "2", "--period", "4"])
