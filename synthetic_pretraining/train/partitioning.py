"""Device mesh, logical-axis rules and shardings (T5X's partitioning, written with plain jax).

The mesh has two axes, ("data", "model"): `num_partitions` devices per model replica along "model",
the rest along "data". Parameters carry logical axis names (`vocab`, `embed`, `mlp`, `heads`,
`joined_kv`, …) and `logical_axis_rules` maps them onto mesh axes as T5X's
`standard_logical_axis_rules` does: model-parallel dimensions go to "model", the batch to "data".
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import gin
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

LogicalRules = Sequence[tuple[str, str | None]]


def logical_axis_rules() -> LogicalRules:
  """T5X's standard rules for 1-D parameter partitioning plus data parallelism."""
  return (
      ("batch", "data"),
      ("vocab", "model"),
      ("embed", None),
      ("mlp", "model"),
      ("heads", "model"),
      ("kv", None),
      ("joined_kv", "model"),
      ("length", None),
      ("relpos_buckets", None),
  )


def create_mesh(num_partitions: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ("data", "model") mesh over all (global) devices, `num_partitions` wide along "model"."""
  devices = list(jax.devices() if devices is None else devices)
  if num_partitions < 1 or len(devices) % num_partitions:
    raise ValueError(f"num_partitions={num_partitions} must divide the number of devices "
                     f"({len(devices)})")
  grid = np.asarray(devices, dtype=object).reshape(len(devices) // num_partitions, num_partitions)
  return Mesh(grid, ("data", "model"))


def logical_to_sharding(logical_specs: Any, mesh: Mesh,
                        rules: LogicalRules | None = None) -> Any:
  """Tree of `PartitionSpec`s over logical names → tree of `NamedSharding`s over the mesh."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, list(rules or logical_axis_rules()))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over "data"; the rest replicated."""
  return NamedSharding(mesh, P("data"))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
  data = mesh.shape["data"]
  if global_batch_size % data:
    raise ValueError(f"batch size {global_batch_size} is not divisible by the data-parallel "
                     f"mesh size {data} (devices {mesh.devices.size}, num_partitions "
                     f"{mesh.shape['model']})")
  if global_batch_size % jax.process_count():
    raise ValueError(f"batch size {global_batch_size} is not divisible by the number of "
                     f"processes {jax.process_count()}")


def host_local_to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's slice of the batch (leading dim) → global arrays sharded over "data"."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


@gin.configurable
def maybe_initialize_distributed(coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None,
                                 cpu_collectives: str | None = None) -> bool:
  """Starts `jax.distributed` for multi-host runs (arguments or gin; no-op without an address).

  The train command binds these from SP_COORDINATOR_ADDRESS, SP_NUM_PROCESSES, SP_PROCESS_ID and
  SP_CPU_COLLECTIVES (see `synthetic_pretraining.environment`; e.g. SP_CPU_COLLECTIVES=gloo to test
  several CPU processes on one machine). `coordinator_address='auto'` calls
  `jax.distributed.initialize()` bare, for cluster managers jax detects itself (SLURM, Cloud
  TPU). Returns True when distributed mode was started.
  """
  if not coordinator_address:
    return False
  if cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  if coordinator_address == "auto":
    jax.distributed.initialize()
    return True
  if num_processes is None or process_id is None:
    raise ValueError(f"coordinator address {coordinator_address!r} given without the number of "
                     "processes and this process's id (SP_NUM_PROCESSES, SP_PROCESS_ID, or gin "
                     "maybe_initialize_distributed.num_processes / .process_id)")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  return True
