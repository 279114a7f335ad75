"""One JAX CPU device per core: how a training process uses the cores it may run on.

XLA:CPU runs a jitted step as one program, but each convolution (a YNNPACK fusion in this
jaxlib) on one thread: a step's convs take as long on two cores as on one
(``bench/profile_step_2threads.md``); only independent ops side by side and the loop fusions
use the second core. Given one CPU device per core, the trainer, which is data-parallel over
its local devices, splits each batch across them and the convs run on every core
(``bench/trainer_throughput.py`` prints the gain; the README has the numbers). BatchNorm
still normalises over the whole batch: XLA's SPMD partitioner adds the cross-device sums, so
the step computes what the single-device one does.

Sweep workers pinned to one core get one device; ``dse train`` on a 2-core machine gets two
(the trainer uses as many as split its batches evenly, see ``data_parallel_count``).
A count the user chose (``JAX_NUM_CPU_DEVICES`` or ``--xla_force_host_platform_device_count``
in ``XLA_FLAGS``) is left alone; ``JAX_NUM_CPU_DEVICES=1`` turns the split off.
"""

from __future__ import annotations

import os

from dse.errors import ConfigError

DEVICE_COUNT_VARIABLE = "JAX_NUM_CPU_DEVICES"


def cores_available() -> int:
    """The cores this process may run on (its CPU affinity, which sweep workers narrow)."""
    return len(os.sched_getaffinity(0))


def check_device_count_variable() -> None:
    """A JAX_NUM_CPU_DEVICES that is not a whole number is one line and exit 2, before JAX's
    import fails on it with a traceback (every dse command checks it first)."""
    value = os.environ.get(DEVICE_COUNT_VARIABLE)
    if value is None:
        return
    try:
        int(value)
    except ValueError:
        raise ConfigError(f"{DEVICE_COUNT_VARIABLE}={value!r}: not a whole number of CPU devices "
                          f"(1 turns the split over cores off)") from None


def user_chose_device_count() -> bool:
    """Whether the environment already fixes the CPU device count."""
    return DEVICE_COUNT_VARIABLE in os.environ or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")


def one_cpu_device_per_core() -> int | None:
    """Ask JAX for one CPU device per available core; returns the count, or None when the
    user fixed it or JAX's backends already started (the count cannot change after that)."""
    import jax
    from jax._src import xla_bridge  # no public API says whether the backends have started

    if user_chose_device_count() or xla_bridge.backends_are_initialized():
        return None
    count = cores_available()
    jax.config.update("jax_num_cpu_devices", count)
    return count


# Measured on 2 cores only. On a many-core machine the split stops where a device's share of
# a batch would fall below this: every BatchNorm layer synchronises the devices twice a step,
# and a share of a few images would make the step mostly synchronisation.
MIN_IMAGES_PER_DEVICE = 16


def data_parallel_shardings(devices: list) -> tuple:
    """(batch sharding, replicated sharding) over ``devices``: batches split on axis 0, state copied."""
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(devices), ("data",))
    return NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())


def data_parallel_count(device_count: int, batch_size: int, *other_batch_sizes: int) -> int:
    """The most devices (at most ``device_count``) that split every batch size evenly, each
    device getting at least MIN_IMAGES_PER_DEVICE of a training batch (or all of a smaller one).

    >>> data_parallel_count(2, 128, 1000), data_parallel_count(4, 96, 250), data_parallel_count(3, 99, 250)
    (2, 2, 1)
    >>> data_parallel_count(64, 128, 1024), data_parallel_count(2, 16, 128)
    (8, 1)
    """
    sizes = (batch_size, *other_batch_sizes)
    return max(n for n in range(1, device_count + 1)
               if all(size % n == 0 for size in sizes) and (n == 1 or batch_size // n >= MIN_IMAGES_PER_DEVICE))
