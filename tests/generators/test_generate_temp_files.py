"""`generate` removes the temp files of killed runs (dead process id) and keeps live runs' files."""

import os
import subprocess

from synthetic_pretraining.generators import cli
from synthetic_pretraining.generators.registry import get_task
from synthetic_pretraining.vocab_spec import VocabSpec


def _dead_pid():
  proc = subprocess.Popen(["true"])
  proc.wait()
  return proc.pid


def test_stale_temp_files_are_removed_live_ones_kept(tmp_path):
  task = get_task("identity", VocabSpec.byte())
  folder = tmp_path / "identity"
  folder.mkdir()
  dead = _dead_pid()
  stale = [folder / f".deduped.{dead}.tmp", folder / f".train.txt.{dead}.tmp",
           folder / f".valid.txt.{dead}.tmp"]
  for path in stale:
    path.write_text("[1]\t[1]\n" * 1000)
  live = folder / f".deduped.{os.getppid()}.tmp"  # Another live generate run's file.
  live.write_text("x")
  unrelated = folder / ".deduped.notapid.tmp"
  unrelated.write_text("y")
  stats = cli.write_task_files(task, tmp_path, num_examples=50, num_valid=5)
  assert not any(p.exists() for p in stale)
  assert live.exists() and unrelated.exists()
  assert stats.train_path.exists() and len(stats.train_path.read_text().splitlines()) == stats.kept
  assert sorted(p.name for p in folder.iterdir()) == sorted(
      [live.name, unrelated.name, "train.txt", "valid.txt"])


def test_own_process_id_counts_as_stale(tmp_path):
  """A temp file named with our own id was left by an earlier process that had our id."""
  folder = tmp_path / "t"
  folder.mkdir()
  own = folder / f".deduped.{os.getpid()}.tmp"
  own.write_text("old")
  assert cli.remove_stale_temp_files(folder) == [own]
  assert not own.exists()
