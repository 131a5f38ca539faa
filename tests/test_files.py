import pytest

from knd.files import replace_text, replacing


def test_a_file_is_replaced_only_when_its_block_finishes(tmp_path):
    out = tmp_path / "sub" / "report.json"
    replace_text(out, "old")
    with replacing(out) as tmp:
        tmp.write_text("new")
        assert out.read_text() == "old"  # readers meet the old file until the block ends
    assert out.read_text() == "new"
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.json"]


def test_a_failed_block_leaves_the_old_file_and_no_half_written_one(tmp_path):
    out = tmp_path / "model.pt"
    out.write_text("whole")
    with pytest.raises(KeyboardInterrupt), replacing(out) as tmp:
        tmp.write_text("ha")
        raise KeyboardInterrupt
    assert out.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_folder_is_swapped_whole(tmp_path):
    out = tmp_path / "processed"
    out.mkdir()
    (out / "stale.csv").write_text("from an older run")
    (tmp_path / "processed.tmp").mkdir()  # left by a killed run
    (tmp_path / "processed.tmp" / "half.pt").write_text("half")
    with replacing(out) as tmp:
        assert not tmp.exists()
        tmp.mkdir()
        (tmp / "features.pt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["features.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["processed"]


def test_a_failed_folder_leaves_the_old_folder(tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    (out / "clip.wav").write_text("audio")
    with pytest.raises(OSError), replacing(out) as tmp:
        tmp.mkdir()
        (tmp / "part.wav").write_text("half")
        raise OSError("disk full")
    assert sorted(p.name for p in out.iterdir()) == ["clip.wav"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
