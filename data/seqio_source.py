"""seqio adapter (optional extra `ladderlab[seqio]`): a registered seqio Task or Mixture as a ladderlab domain.

seqio imports TensorFlow, so only this module imports it, and only when called. A Task's examples become
documents (a string feature as UTF-8 text, a token feature decoded by the feature's own vocabulary); a Mixture
gives the documents of each of its Tasks in turn. `write_seqio_corpus` writes them as a corpus folder, so the
rest of the pipeline (token cache, packing, mixing) is the same as for any other source.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ladderlab.data.corpus import write_corpus
from ladderlab.errors import LadderlabError


def seqio_documents(name: str, split: str = "train", feature: str = "targets") -> Iterator[str]:
    """The documents of seqio Task or Mixture `name` (its `split`, unshuffled, one epoch), from `feature`."""
    try:
        import seqio
    except ImportError:
        raise LadderlabError("seqio is not installed: pip install 'ladderlab[seqio]'") from None
    try:
        provider = seqio.get_mixture_or_task(name)
    except ValueError:
        raise LadderlabError(f"seqio: no registered Task or Mixture named {name!r}") from None
    tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
    for task in tasks:
        if feature not in task.output_features:
            raise LadderlabError(f"seqio task {task.name!r}: no feature {feature!r} (has {', '.join(task.output_features)})")
        vocabulary = task.output_features[feature].vocabulary
        dataset = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1, use_cached=False)
        for example in dataset.as_numpy_iterator():
            value = example[feature]
            if isinstance(value, bytes):
                yield value.decode("utf-8")
            else:
                yield vocabulary.decode(np.asarray(value).tolist())


def write_seqio_corpus(folder: str | Path, domains: dict[str, str], split: str = "train", feature: str = "targets") -> Path:
    """Write a corpus folder with one domain per seqio Task/Mixture: {domain name: seqio name}."""
    folder = Path(folder)
    write_corpus(folder, {d: seqio_documents(n, split, feature) for d, n in domains.items()},
                 {d: {"seqio": n, "split": split, "feature": feature} for d, n in domains.items()})
    return folder
