"""Built-in corpora: where they are cached, how one is written (JSONL per domain + SHA-256 manifest), and the
"quick" corpus made only of text a fresh machine already has (stdlib code, man pages, vim help). A corpus at an
object-store URL (gs://...) is copied into the local cache first: the token caches built from it are memory-mapped,
so caches live on local disk."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sysconfig
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ladderlab.data.cleaning import roff_to_text
from ladderlab.errors import LadderlabError
from ladderlab.paths import AnyPath, as_path, is_url, write_atomic

QUICK_BYTES = 1_000_000  # per domain: small enough for tests, big enough for tiny ladders.
SKIP_CODE_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


def cache_root(cache_dir: str = "") -> Path:
    """`cache_dir`, else $LADDERLAB_CACHE, else ~/.cache/ladderlab (local disk: caches are memory-mapped)."""
    if is_url(cache_dir):
        raise LadderlabError(f"cache_dir={cache_dir}: caches are memory-mapped and live on local disk; give a local "
                             f"folder (a gs:// corpus is copied into it)")
    return Path(cache_dir or os.environ.get("LADDERLAB_CACHE") or Path.home() / ".cache" / "ladderlab")


def resolve_corpus(corpus: str, cache_dir: str = "") -> Path:
    """The folder of a corpus: "quick" (built here on first use), "demo" (must be built), or a path."""
    if corpus == "quick":
        return build_quick(cache_root(cache_dir) / "corpora" / "quick")
    if corpus == "demo":
        folder = cache_root(cache_dir) / "corpora" / "demo"
        if not (folder / "manifest.json").is_file():
            raise LadderlabError(f"corpus 'demo' is not built in {folder}: run `ladderlab data build-corpus`")
        return folder
    if is_url(corpus):
        return stage_corpus(corpus, cache_root(cache_dir))
    folder = Path(corpus).expanduser()
    if not folder.is_dir():
        raise LadderlabError(f"corpus folder not found: {folder} (or use 'quick' / 'demo')")
    return folder


def stage_corpus(url: str, cache: Path) -> Path:
    """A local copy of the corpus folder at `url` in `cache`/corpora/staged/ (files already there at the same size
    are kept)."""
    remote = as_path(url)
    if not remote.is_dir():
        raise LadderlabError(f"corpus folder not found: {url}")
    folder = cache / "corpora" / "staged" / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    for name, path in _files(remote):
        local = folder / name
        if not (local.is_file() and local.stat().st_size == path.stat().length):
            local.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(local, path.read_bytes())
    return folder


def _files(folder: AnyPath) -> Iterator[tuple[str, AnyPath]]:
    """(name relative to `folder`, path) of every file under `folder` (GCS has no recursive glob)."""
    for path in folder.iterdir():
        yield from ((f"{path.name}/{name}", p) for name, p in _files(path)) if path.is_dir() else [(path.name, path)]


def write_corpus(folder: Path, domains: dict[str, Iterable[str]], info: dict[str, dict]) -> dict:
    """Write `<domain>.jsonl` files and manifest.json (docs, bytes, sha256 per domain, plus `info`) atomically."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    manifest: dict[str, dict] = {}
    for name, docs in domains.items():
        path, digest, count, size = tmp / f"{name}.jsonl", hashlib.sha256(), 0, 0
        with open(path, "wb") as f:
            for doc in docs:
                line = (json.dumps({"text": doc}, ensure_ascii=False) + "\n").encode("utf-8")
                f.write(line)
                digest.update(line)
                count, size = count + 1, size + len(doc.encode("utf-8"))
        if count == 0:
            shutil.rmtree(tmp)
            raise LadderlabError(f"corpus {folder.name}: domain {name!r} came out empty")
        manifest[name] = {"file": path.name, "docs": count, "bytes": size, "sha256": digest.hexdigest(), **info.get(name, {})}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return manifest


def build_quick(folder: Path, max_bytes: int = QUICK_BYTES) -> Path:
    """Build (once) the quick corpus: code, docs (English man pages 2-7), german (man pages), vimhelp."""
    if (folder / "manifest.json").is_file():
        return folder
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = sorted(p for p in stdlib.rglob("*.py") if not SKIP_CODE_DIRS & set(p.relative_to(stdlib).parts))
    english = sorted(p for s in range(2, 8) for p in Path(f"/usr/share/man/man{s}").glob("*") if p.is_file())
    german = sorted(p for p in Path("/usr/share/man/de").rglob("*") if p.is_file())
    vim = sorted(p for d in Path("/usr/share/vim").glob("vim*/doc") for p in d.glob("*.txt"))
    picks = {"code": (code, _plain), "docs": (english, man_page_text), "german": (german, man_page_text), "vimhelp": (vim, _plain)}
    domains, info = {}, {}
    for name, (paths, read) in picks.items():
        if not paths:
            raise LadderlabError(f"quick corpus: no files for domain {name!r} on this machine")
        domains[name], skipped = _take(paths, read, max_bytes)
        info[name] = {"sources": sorted({str(p.parent) for p in paths}), "skipped": skipped}
    write_corpus(folder, domains, info)
    return folder


def _take(paths: list[Path], read, max_bytes: int) -> tuple[list[str], list[str]]:
    """Documents from `paths` in order until `max_bytes`; files that are not UTF-8 or are links are listed."""
    docs, skipped, total = [], [], 0
    for path in paths:
        if total >= max_bytes:
            break
        try:
            text = read(path)
        except UnicodeDecodeError:
            skipped.append(f"{path}: not UTF-8")
            continue
        if text is None:
            skipped.append(f"{path}: link to another page")
            continue
        docs.append(text)
        total += len(text.encode("utf-8"))
    return docs, skipped


def _plain(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def man_page_text(path: Path) -> str | None:
    """Plain text of a (gzipped) man page file; None for a `.so` link to another page."""
    raw = path.read_bytes()
    source = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    if source.lstrip().startswith(".so "):
        return None
    return roff_to_text(source)
