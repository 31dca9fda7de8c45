"""The one path layer: every file ladderlab reads or writes may be a local path or an object-store URL (gs://,
s3://, ...), the latter through etils `epath` over fsspec (gcsfs for gs://, the `ladderlab[gcs]` extra).

Writes are atomic enough for a kill at any moment. Locally a file is written under a temporary name beside it and
renamed over it (`os.replace`), so a reader sees the old file or the new one. An object store has no cheap rename
(GCS's is a copy), but one object is uploaded whole: readers see the old object or the new one, never a part, so
a file there is written to local disk and uploaded in one write. Two writers of one object would race (the last
upload wins), hence the single-writer rule: one process writes a folder on an object store at a time (a ladder's
results store is written by the process running `ladder run`, a run's folder by its process 0).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pathlib
import re
import tempfile
from typing import TYPE_CHECKING, Iterator, Union

from ladderlab.errors import LadderlabError

if TYPE_CHECKING:
    from etils import epath

AnyPath = Union[pathlib.Path, "epath.Path"]
URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
SCHEMES = ("gs", "s3", "az", "hf")  # the object stores epath knows
EXTRAS = {"gs": ("gcsfs", "gcs")}  # scheme -> (the fsspec filesystem's module, the ladderlab extra that installs it)


def is_url(path: str | os.PathLike) -> bool:
    """Whether `path` is an object-store URL (scheme://...) rather than a local path."""
    return bool(URL.match(str(path)))


def as_path(path: str | os.PathLike) -> AnyPath:
    """`path` as a path object: `pathlib.Path` for a local path (as before), `epath.Path` for a URL, after checking
    that the filesystem for its scheme is installed (else one line naming the extra to install)."""
    if not is_url(path):
        return pathlib.Path(path)
    scheme = URL.match(str(path))[1]
    if scheme not in SCHEMES:
        raise LadderlabError(f"{path}: {scheme}:// is not a supported store (supported: "
                             f"{', '.join(s + '://' for s in SCHEMES)})")
    module, extra = EXTRAS.get(scheme, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise LadderlabError(f"{path}: {scheme}:// paths need the {extra} extra: pip install 'ladderlab[{extra}]'")
    import fsspec
    from etils import epath

    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as e:
        raise LadderlabError(f"{path}: {scheme}:// paths are not supported here ({str(e).splitlines()[0]})") from None
    return epath.Path(str(path))


@contextlib.contextmanager
def replacing(path: AnyPath) -> Iterator[pathlib.Path]:
    """A temporary local path to write, put in place of `path` when the block ends without error, so a kill leaves
    the old file or the new one: renamed over a local file (a replaced file keeps its mode, a new one is 644:
    results are for sharing), uploaded as one object to a URL."""
    path = as_path(path)
    if is_url(path):
        with tempfile.TemporaryDirectory(prefix="ladderlab-") as folder:
            tmp = pathlib.Path(folder) / path.name
            yield tmp
            path.write_bytes(tmp.read_bytes())
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes 600
    os.close(fd)
    try:
        yield pathlib.Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: AnyPath, data: str | bytes) -> None:
    """Write `data` to `path` atomically (`replacing`), synced to disk before the rename."""
    with replacing(path) as tmp, tmp.open("wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
