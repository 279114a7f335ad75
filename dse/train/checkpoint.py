"""Per-epoch checkpoints with orbax: the last good epoch is always restorable."""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


def saved_epochs(directory: Path) -> list[int]:
    """The epochs checkpointed under ``directory`` (finished saves only, as orbax lists them), oldest first."""
    return sorted(ocp.utils.checkpoint_steps(directory)) if directory.is_dir() else []


class EpochCheckpoints:
    """Saves the train state after each epoch under ``directory/<epoch>``; keeps the newest two."""

    def __init__(self, directory: Path):
        options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
        self._manager = ocp.CheckpointManager(directory.absolute(), options=options)

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def save(self, epoch: int, state) -> None:
        self._manager.save(epoch, args=ocp.args.StandardSave(state))

    def restore(self, epoch: int, like):
        """State of ``epoch``, with the structure, shapes and shardings of ``like``. A leaf of ``like``
        without a sharding (shapes only, from ``jax.eval_shape``) lands on the default device: a run
        trained on a device per core (``dse.train.devices``) restores in a process with one device,
        where orbax would otherwise ask for the saved topology."""
        default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

        def target(leaf):
            struct = ocp.utils.to_shape_dtype_struct(leaf)
            if getattr(struct, "sharding", None) is None:
                struct = jax.ShapeDtypeStruct(struct.shape, struct.dtype, sharding=default)
            return struct

        abstract = jax.tree.map(target, like)
        return self._manager.restore(epoch, args=ocp.args.StandardRestore(abstract))

    def keep_last_only(self) -> None:
        """Delete every epoch but the newest: a finished run keeps what export and compression read."""
        for epoch in self._manager.all_steps()[:-1]:
            self._manager.delete(epoch)

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
