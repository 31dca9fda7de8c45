"""The results store's atomic writer: whole files only, readable by everyone (reports are for sharing)."""

import stat

from ladderlab.ladders.store import write_atomic


def test_write_atomic_replaces_whole_file_with_mode_644(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old and longer text")
    write_atomic(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temporary file left behind
