"""Orbax checkpoints of a run: train state (params, optimizer, step) plus the grain data-iterator state.

Saves are asynchronous; `close()` waits for them. Keeps the last K and every M-th step. Restoring walks back from
the newest step: an unreadable one is renamed `<step>.corrupt` with a warning and the previous one is used.
`read_params` reads only the parameters of one checkpoint folder (another run's, to start from).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

from ladderlab.errors import LadderlabError
from ladderlab.paths import as_path, is_url


class Checkpoints:
    """A run folder's checkpoint manager."""

    def __init__(self, directory: str | os.PathLike, keep_last: int = 3, keep_every: int = 0):
        """`directory` may be local or a cloud path (gs://...), which multi-host runs need."""
        self.directory = epath.Path(as_path(directory) if is_url(directory) else os.path.abspath(directory))
        # create=False: opening writes nothing (the first save makes the folder), so config errors found after it
        # still leave no files behind
        options = ocp.CheckpointManagerOptions(max_to_keep=keep_last or None, keep_period=keep_every or None,
                                               create=False, enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest(self) -> int | None:
        """The newest committed step (may still be unverified until `restore`)."""
        return self.manager.latest_step()

    def save(self, step: int, state: dict, data_iterator: Any) -> None:
        """Start saving `state` and the iterator's position at `step` (returns before the write finishes)."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        data=grain.checkpoint.CheckpointSave(data_iterator)))

    def restore(self, abstract_state: dict, data_iterator: Any) -> tuple[dict, int] | None:
        """(state, step) from the newest readable checkpoint, also rewinding `data_iterator`; None if there is none."""
        for step in sorted(self.manager.all_steps(), reverse=True):
            args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      data=grain.checkpoint.CheckpointRestore(data_iterator))
            try:
                return self.manager.restore(step, args=args).state, step
            except Exception as e:  # a partial or damaged checkpoint: set it aside, try the one before
                warnings.warn(f"checkpoint {self.directory / str(step)} is unreadable "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                              f"falling back to the previous one", stacklevel=2)
                if jax.process_index() == 0:
                    (self.directory / str(step)).rename(self.directory / f"{step}.corrupt")
                self.manager.reload()
        return None

    def close(self) -> None:
        """Wait for pending saves (re-raising their errors) and release the manager."""
        try:
            self.manager.wait_until_finished()
        finally:
            self.manager.close()


def _checkpoint_folder(path: str) -> epath.Path:
    """`path` as a checkpoint folder (`<checkpoints>/<step>`, local or gs://), or a one-line error naming it."""
    folder = epath.Path(as_path(path) if is_url(path) else os.path.abspath(path))
    if not folder.name.isdigit() or not (folder / "state").is_dir():
        raise LadderlabError(f"init_from={path!r}: not a checkpoint folder (<run>/checkpoints/<step>, holding state/)")
    return folder


def read_params(path: str, abstract_params: dict) -> dict:
    """The parameters saved in checkpoint folder `path`, restored into abstract_params' shapes and shardings (the
    rest of that state, e.g. an optimizer of other settings, is not read)."""
    folder, target = _checkpoint_folder(path), {"params": abstract_params}
    saved = _by_name(ocp.PyTreeCheckpointer().metadata(folder / "state").item_metadata["params"])
    for name, x in _by_name(abstract_params).items():
        if name not in saved or tuple(saved[name].shape) != x.shape:
            found = f"of shape {tuple(saved[name].shape)}" if name in saved else "missing"
            raise LadderlabError(f"init_from={path!r}: parameter {name} is {found}; this model's is {x.shape}")
    args = ocp.args.PyTreeRestore(item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                                  partial_restore=True)
    return ocp.PyTreeCheckpointer().restore(folder / "state", args=args)["params"]


def _by_name(tree: Any) -> dict[str, Any]:
    """{'blocks/0/mlp/w_up': leaf, ...}: a tree's leaves by path (integer and string keys alike)."""
    return {"/".join(str(getattr(k, "key", k)) for k in path): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
