"""sslkit.atomic_files: a file is written whole or not at all, and a failure names the file, not its temporary."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from sslkit import atomic_files
from sslkit.atomic_files import (save_safetensors_atomic, torch_save_atomic, write_bytes_atomic, write_file_atomic,
                                 write_json_atomic, write_text_atomic)


def test_writers_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "deep" / "er" / "out.bin"  # missing parents are created
    write_bytes_atomic(path, b"one")
    assert write_bytes_atomic(path, b"two", fsync=True) == path
    assert path.read_bytes() == b"two"
    write_text_atomic(tmp_path / "t.txt", "é\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "é\n"
    write_json_atomic(tmp_path / "v.json", {"a": [1, 2.5]}, indent=None)
    assert (tmp_path / "v.json").read_text() == '{"a": [1, 2.5]}\n'
    torch_save_atomic(tmp_path / "w.pt", {"w": torch.arange(3)}, fsync=True)
    assert torch.equal(torch.load(tmp_path / "w.pt", weights_only=True)["w"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["out.bin", "t.txt", "v.json", "w.pt"]


def test_json_is_strict_and_checked_before_the_disk_is_touched(tmp_path):
    for bad in ({"x": float("nan")}, {"x": object()}):
        with pytest.raises((ValueError, TypeError)):
            write_json_atomic(tmp_path / "bad.json", bad)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_writer_keeps_the_old_file_and_names_the_target(tmp_path):
    path = tmp_path / "report.json"
    write_text_atomic(path, "old")

    def full_disk(tmp):
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(OSError, match="No space left on device") as caught:
        write_file_atomic(path, full_disk)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failed_rename_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "weights.safetensors"

    def read_only(src, dst, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), src, None, dst)

    monkeypatch.setattr(atomic_files.os, "replace", read_only)
    with pytest.raises(OSError) as caught:
        save_safetensors_atomic(path, {"w": torch.ones(2)})
    monkeypatch.undo()
    assert caught.value.filename == str(path) and caught.value.errno == errno.EROFS
    assert list(tmp_path.iterdir()) == []


def test_an_error_about_another_file_is_left_as_it_is(tmp_path):
    source = tmp_path / "missing.csv"

    def copy(tmp):
        tmp.write_bytes(source.read_bytes())

    with pytest.raises(FileNotFoundError) as caught:
        write_file_atomic(tmp_path / "copy.csv", copy)
    assert caught.value.filename == str(source) and list(tmp_path.iterdir()) == []


def test_safetensors_files_are_as_readable_as_any_file(tmp_path):
    from safetensors.torch import load_file

    path = save_safetensors_atomic(tmp_path / "a.safetensors", {"w": torch.arange(4.0)}, {"k": "v"}, fsync=True)
    assert torch.equal(load_file(str(path))["w"], torch.arange(4.0))
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
