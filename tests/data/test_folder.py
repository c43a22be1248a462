"""ImageFolderDataset / PathListDataset: labels, channel handling, bit depths and every error case."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.data.errors import DataError
from sslkit.data.folder import ImageFolderDataset, PathListDataset, read_bad_files


def _rgb(path, value=(200, 100, 50), size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, value).save(path)
    return path


def _truncated_jpeg(path):
    array = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(array).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_class_subfolders_give_sorted_labels(tmp_path):
    for cls, n in (("dog", 2), ("cat", 3)):
        for i in range(n):
            _rgb(tmp_path / cls / f"{i}.png")
    _rgb(tmp_path / "cat" / "nested" / "deep.jpg")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    ds = ImageFolderDataset(tmp_path)
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert len(ds) == 6 and [ds[i]["label"] for i in range(6)] == [0, 0, 0, 0, 1, 1]
    item = ds[0]
    assert item["image"].shape == (3, 10, 12) and item["image"].dtype == torch.float32
    assert torch.allclose(item["image"][:, 0, 0], torch.tensor([200, 100, 50]) / 255.0)
    assert ds.channels == 3 and ds.mean == (0.485, 0.456, 0.406)
    batch = torch.utils.data.default_collate([ds[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 10, 12) and len(batch["path"]) == 3


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(3):
        _rgb(tmp_path / f"{i}.PNG")
    _rgb(tmp_path / "sub" / "x.png")  # loose images at the root: no classes
    ds = ImageFolderDataset(tmp_path)
    assert ds.num_classes is None and ds.class_names is None
    assert len(ds) == 4 and all(ds[i]["label"] == -1 for i in range(4))


def test_one_channel_png_auto_and_conversion(tmp_path):
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(gray, mode="L").save(tmp_path / "a.png")
    ds = ImageFolderDataset(tmp_path)
    assert ds.channels == 1 and ds.mean == (0.5,) and ds.std == (0.25,)
    assert torch.allclose(ds[0]["image"][0], torch.from_numpy(gray / 255.0).float())
    rgb = ImageFolderDataset(tmp_path, channels=3)
    assert rgb[0]["image"].shape == (3, 6, 10) and torch.equal(rgb[0]["image"][0], rgb[0]["image"][2])
    custom = ImageFolderDataset(tmp_path, mean=(0.2,), std=(0.3,))
    assert custom.mean == (0.2,) and custom.std == (0.3,)
    with pytest.raises(DataError, match="mean"):
        ImageFolderDataset(tmp_path, mean=(0.1, 0.2, 0.3))


def test_rgb_to_one_channel_uses_luma(tmp_path):
    _rgb(tmp_path / "a.png", value=(255, 0, 0))
    image = ImageFolderDataset(tmp_path, channels=1)[0]["image"]
    assert image.shape == (1, 10, 12) and abs(image[0, 0, 0].item() - 76 / 255) < 1e-6  # PIL: 0.299 * 255


def test_sixteen_bit_and_float_tiffs_scale_to_unit_range(tmp_path):
    values = np.array([[0, 1000], [32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "a16.tif")
    ds = ImageFolderDataset(tmp_path)
    assert ds.channels == 1
    assert torch.allclose(ds[0]["image"][0], torch.from_numpy(values / 65535.0).float())
    Image.fromarray(values).save(tmp_path / "b16.png")
    assert torch.allclose(ds.__class__(tmp_path)[1]["image"][0], torch.from_numpy(values / 65535.0).float())
    floats = tmp_path / "floats"
    floats.mkdir()
    Image.fromarray(np.array([[0.25, 0.5]], dtype=np.float32)).save(floats / "unit.tif")
    Image.fromarray(np.array([[-2.0, 6.0]], dtype=np.float32)).save(floats / "wide.tif")
    f = ImageFolderDataset(floats)
    assert torch.allclose(f[0]["image"], torch.tensor([[[0.25, 0.5]]]))
    assert torch.allclose(f[1]["image"], torch.tensor([[[0.0, 1.0]]]))


def test_rgba_and_palette_become_rgb(tmp_path):
    Image.new("RGBA", (4, 4), (10, 20, 30, 0)).save(tmp_path / "a.png")
    palette = Image.new("P", (4, 4))
    palette.putpalette([255, 0, 0] * 256)
    palette.save(tmp_path / "b.png")
    ds = ImageFolderDataset(tmp_path)
    assert ds.channels == 3
    assert torch.allclose(ds[0]["image"][:, 0, 0], torch.tensor([10, 20, 30]) / 255.0)
    assert torch.allclose(ds[1]["image"][:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_csv_with_string_labels_and_relative_paths(tmp_path):
    images = tmp_path / "imgs"
    for name in ("a", "b", "c"):
        _rgb(images / f"{name}.png")
    (tmp_path / "list.csv").write_text("path,label\nimgs/a.png,zebra\nimgs/b.png,ant\nimgs/c.png,\n")
    ds = PathListDataset(tmp_path / "list.csv")
    assert ds.class_names == ["ant", "zebra"] and ds.num_classes == 2
    assert [ds[i]["label"] for i in range(3)] == [1, 0, -1]
    numeric = tmp_path / "numeric.csv"
    numeric.write_text("label,path\n10,a.png\n2,b.png\n")
    ds = PathListDataset(numeric, root=images)
    assert ds.class_names == ["2", "10"] and [ds[0]["label"], ds[1]["label"]] == [1, 0]


def test_txt_list_with_root(tmp_path):
    images = tmp_path / "imgs"
    for name in ("a", "b"):
        _rgb(images / f"{name}.png")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("# comment\nb.png\n\na.png\n")
    ds = PathListDataset(lists / "train.txt", root=images, channels=1)
    assert len(ds) == 2 and ds.num_classes is None and ds[0]["label"] == -1
    assert ds[0]["path"].endswith("b.png") and ds[0]["image"].shape == (1, 10, 12)


def test_construction_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=str(missing)):
        ImageFolderDataset(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="png") as info:
        ImageFolderDataset(empty)
    assert str(empty) in str(info.value)
    with pytest.raises(DataError, match="list.csv"):
        PathListDataset(tmp_path / "list.csv")
    no_path = tmp_path / "bad.csv"
    no_path.write_text("file,label\na.png,1\n")
    with pytest.raises(DataError, match="'path' column") as info:
        PathListDataset(no_path)
    assert str(no_path) in str(info.value)
    _rgb(tmp_path / "ok.png")
    listed = tmp_path / "listed.txt"
    listed.write_text("ok.png\nghost1.png\nghost2.png\n")
    with pytest.raises(DataError, match="ghost1.png") as info:
        PathListDataset(listed)
    assert "ghost2.png" in str(info.value) and "2 file(s)" in str(info.value)
    with pytest.raises(DataError, match="channels"):
        ImageFolderDataset(tmp_path, channels=2)


def test_truncated_and_garbage_files_raise_data_error_naming_path(tmp_path):
    _rgb(tmp_path / "a_good.png")
    bad = _truncated_jpeg(tmp_path / "b_truncated.jpg")
    garbage = tmp_path / "c_garbage.png"
    garbage.write_bytes(b"definitely not a png")
    ds = ImageFolderDataset(tmp_path, channels=3)
    assert ds[0]["image"].shape == (3, 10, 12)
    with pytest.raises(DataError, match="b_truncated.jpg") as info:
        ds[1]
    assert "Item 1" in str(info.value)
    with pytest.raises(DataError, match="c_garbage.png"):
        ds[2]
    assert ds.verify(progress=False) == [str(bad), str(garbage)]


def test_skip_bad_files_moves_on_and_logs(tmp_path):
    images = tmp_path / "imgs"
    _rgb(images / "a.png", value=(1, 2, 3))
    _truncated_jpeg(images / "b.jpg")
    _rgb(images / "c.png", value=(4, 5, 6))
    log = tmp_path / "bad.jsonl"
    ds = ImageFolderDataset(images, channels=3, skip_bad_files=True, bad_files_log=log)
    item = ds[1]
    assert item["path"].endswith("c.png")
    assert torch.allclose(item["image"][:, 0, 0], torch.tensor([4, 5, 6]) / 255.0)
    fresh = ImageFolderDataset(images, channels=3, skip_bad_files=True, bad_files_log=log)
    assert fresh[1]["path"].endswith("c.png")  # a second reader appends the same path again
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["reason"]
    assert read_bad_files(log) == [str(images / "b.jpg")]
    assert read_bad_files(tmp_path / "absent.jsonl") == []
    # Wrapping: the last index skips forward to the first.
    _truncated_jpeg(images / "d.jpg")
    wrapped = ImageFolderDataset(images, channels=3, skip_bad_files=True)
    assert wrapped[3]["path"].endswith("a.png")


def test_deterministic_listing(tmp_path):
    for name in ("z.png", "a.png", "m/b.png", "m/a.png"):
        _rgb(tmp_path / name)
    first = ImageFolderDataset(tmp_path).paths
    assert first == ImageFolderDataset(tmp_path).paths
    assert [p[len(str(tmp_path)) + 1:] for p in first] == ["a.png", "m/a.png", "m/b.png", "z.png"]
