"""The path layer: local paths stay `pathlib` paths, URLs need their extra (one line naming it), and atomic writes
leave the old file or the new one. (The gs:// round trip runs against a GCS emulator: tests/ladders/test_ladder_gcs.py.)"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from ladderlab import paths
from ladderlab.cli import main
from ladderlab.errors import LadderlabError


@pytest.fixture
def no_gcsfs(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gcsfs" else find_spec(name, *a))


def test_local_paths_stay_pathlib_paths(tmp_path):
    assert paths.as_path(str(tmp_path / "a")) == tmp_path / "a" and type(paths.as_path("x")) is type(pathlib.Path("x"))
    assert not paths.is_url("runs/gs:/x") and paths.is_url("gs://bucket/x")


def test_a_url_without_its_extra_is_one_line_naming_it(no_gcsfs, capsys):
    with pytest.raises(LadderlabError, match=r"^gs://b/x: gs:// paths need the gcs extra: "
                                             r"pip install 'ladderlab\[gcs\]'$"):
        paths.as_path("gs://b/x")
    assert main(["report", "gs://bucket/demo"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "gs://bucket/demo: gs:// paths need the gcs extra: pip install 'ladderlab[gcs]'")
    with pytest.raises(LadderlabError, match=r"^ftp://h/x: ftp:// is not a supported store \(supported: gs://, s3://"):
        paths.as_path("ftp://h/x")


def test_replacing_keeps_the_old_file_on_error_and_its_mode_on_success(tmp_path):
    target = tmp_path / "runs.csv"
    target.write_text("old")
    target.chmod(0o640)
    with pytest.raises(RuntimeError), paths.replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]
    paths.write_atomic(str(target), "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640
    paths.write_atomic(tmp_path / "fresh.json", b"{}")
    assert (tmp_path / "fresh.json").read_bytes() == b"{}" and (tmp_path / "fresh.json").stat().st_mode & 0o777 == 0o644
