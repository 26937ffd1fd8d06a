"""The one module that reads environment variables; only command-line entry points call it.

The library itself (task registry, vocabularies, data sources, training loop) reads no
environment variable: what a run is comes from gin files, bindings and arguments. For convenience
on a shell, the commands turn these variables into defaults — a value given on the command line
(or in Python, as an argument or a gin binding) always wins:

| variable | used by | becomes |
|---|---|---|
| `SP_VOCAB` | `train` | macro `VOCABULARY` ('t5', 'byte' or a `.model` path) |
| `SP_T5_SPM_PATH` | `train` | macro `T5_SPM_PATH` (local copy of T5's SentencePiece model) |
| `SP_DATA_DIR` | `train`, `prepare` | macro `DOWNSTREAM_DATA_DIR`; `prepare --data_dir` default |
| `SP_SYNTHETIC_DATA_DIR` | `train` | macro `SYNTHETIC_DATA_DIR` (files of the `*_files` tasks) |
| `SP_NATURAL_CORPUS` | `train` | macro `NATURAL_CORPUS` (natural-text corpus) |
| `SP_RAW_DATA_DIR` | `prepare`, `mini` | default folder of official raw downstream files |
| `SP_COORDINATOR_ADDRESS`, `SP_NUM_PROCESSES`, `SP_PROCESS_ID`, `SP_CPU_COLLECTIVES` | `train` | multi-host start (`partitioning.maybe_initialize_distributed`) |
| `SP_DEBUG` | every command | show tracebacks (as `--debug`) |

Process plumbing (not run configuration) also goes through here: `XLA_FLAGS` and
`OMP_WAIT_POLICY` (`process_value`, `set_default`, `limit_threads`), and the environment a command
hands to the subprocesses it starts (`for_subprocess`).

`python -m synthetic_pretraining.train` prints nothing about them; `describe()` lists the ones
that are set.
"""

from __future__ import annotations

import os

VOCAB = "SP_VOCAB"
T5_SPM_PATH = "SP_T5_SPM_PATH"
DATA_DIR = "SP_DATA_DIR"
SYNTHETIC_DATA_DIR = "SP_SYNTHETIC_DATA_DIR"
NATURAL_CORPUS = "SP_NATURAL_CORPUS"
RAW_DATA_DIR = "SP_RAW_DATA_DIR"
COORDINATOR_ADDRESS = "SP_COORDINATOR_ADDRESS"
NUM_PROCESSES = "SP_NUM_PROCESSES"
PROCESS_ID = "SP_PROCESS_ID"
CPU_COLLECTIVES = "SP_CPU_COLLECTIVES"
DEBUG = "SP_DEBUG"

# Variable -> the run files' macro it sets (a string macro).
MACROS = {VOCAB: "VOCABULARY", T5_SPM_PATH: "T5_SPM_PATH", DATA_DIR: "DOWNSTREAM_DATA_DIR",
          SYNTHETIC_DATA_DIR: "SYNTHETIC_DATA_DIR", NATURAL_CORPUS: "NATURAL_CORPUS"}
ALL = tuple(MACROS) + (RAW_DATA_DIR, COORDINATOR_ADDRESS, NUM_PROCESSES, PROCESS_ID,
                       CPU_COLLECTIVES, DEBUG)


def get(name: str) -> str | None:
  """The value of one of the variables above (None when unset or empty)."""
  if name not in ALL:
    raise KeyError(f"{name} is not one of the project's environment variables {ALL}")
  return os.environ.get(name) or None


def gin_macro_defaults() -> dict[str, str]:
  """Macro -> gin value (a quoted string) for each variable of `MACROS` that is set."""
  return {macro: repr(get(variable)) for variable, macro in MACROS.items() if get(variable)}


def debug_requested() -> bool:
  return (get(DEBUG) or "").lower() in ("1", "true", "yes")


def distributed_settings() -> dict:
  """Keyword arguments of `partitioning.maybe_initialize_distributed` from the variables set."""
  settings = {}
  if get(COORDINATOR_ADDRESS):
    settings["coordinator_address"] = get(COORDINATOR_ADDRESS)
  if get(CPU_COLLECTIVES):
    settings["cpu_collectives"] = get(CPU_COLLECTIVES)
  for variable, key in ((NUM_PROCESSES, "num_processes"), (PROCESS_ID, "process_id")):
    value = get(variable)
    if value is not None:
      try:
        settings[key] = int(value)
      except ValueError:
        raise ValueError(f"environment variable {variable}={value!r}: expected an integer") from None
  return settings


def describe() -> str:
  return ", ".join(f"{name}={os.environ[name]!r}" for name in ALL if os.environ.get(name)) or "none"


def limit_threads(threads: int) -> None:
  """Caps XLA's CPU threads of THIS process (call before jax starts; mini-study workers).

  Process plumbing, not run configuration: it sets `XLA_FLAGS` (keeping flags already there) and
  quiets TensorFlow's C++ logs, so that K single-threaded workers share K cores without
  oversubscription.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  multi = "true" if threads > 1 else "false"
  os.environ["XLA_FLAGS"] = (f"{flags} --xla_cpu_multi_thread_eigen={multi} "
                             f"intra_op_parallelism_threads={threads}").strip()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


PROCESS_VARIABLES = ("XLA_FLAGS", "OMP_WAIT_POLICY", "TF_CPP_MIN_LOG_LEVEL")


def process_value(name: str, default: str = "") -> str:
  """A process-plumbing variable (XLA_FLAGS, OMP_WAIT_POLICY, …), for reports and benchmarks."""
  if name not in PROCESS_VARIABLES:
    raise KeyError(f"{name} is not one of {PROCESS_VARIABLES}")
  return os.environ.get(name, default)


def set_default(name: str, value: str) -> None:
  """Sets a process-plumbing variable unless it is exported already (an exported value wins)."""
  if name not in PROCESS_VARIABLES:
    raise KeyError(f"{name} is not one of {PROCESS_VARIABLES}")
  os.environ.setdefault(name, value)


def for_subprocess(**overrides: str) -> dict[str, str]:
  """This process's environment for a child process, with `overrides`."""
  env = dict(os.environ)
  env.update(overrides)
  return env
