"""Tar shards: ``pack_shards`` keeps bytes and labels, ``ShardDataset`` reads them back equal to the folder,
batches resume exactly, a corrupt member is skipped and listed or named in one error, and bad patterns fail."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sslkit.data.errors import DataError
from sslkit.data.folder import ImageFolderDataset, read_bad_files
import sslkit.data.shards as shards_module
from sslkit.data.shard_pack import pack_shards
from sslkit.data.shards import INDEX_NAME, ShardDataset, shard_files
from sslkit.data.sources import open_data
from sslkit.data.stream import AugmentedStream, StreamSampler


def _folder_16bit(root, per_class=(4, 3)):
    """Class folders of distinct 16-bit greyscale PNGs (values above 255, so 8-bit reading would show)."""
    for c, count in enumerate(per_class):
        for i in range(count):
            value = np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000 + 300 * i + 7000 * c
            (root / f"class{c}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(value).save(root / f"class{c}" / f"{i}.png")
    return root


def _pack(source_dir, out, shard_size):
    return pack_shards(ImageFolderDataset(source_dir), out, shard_size, source=str(source_dir), progress=False)


def test_packed_shards_read_back_equal_to_the_folder(tmp_path):
    folder = ImageFolderDataset(_folder_16bit(tmp_path / "src"))
    result = _pack(tmp_path / "src", tmp_path / "shards", 3)
    assert [p.name for p in result.shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert result.pattern.endswith("shard-{000000..000002}.tar") and result.count == 7
    index = json.loads((tmp_path / "shards" / INDEX_NAME).read_text())
    assert index["count"] == 7 and index["class_names"] == ["class0", "class1"]
    # The index's offsets point at the source files' exact bytes inside the tars.
    first = index["shards"][1]
    raw = (tmp_path / "shards" / first["file"]).read_bytes()
    start, size = first["offsets"][0], first["sizes"][0]
    assert raw[start:start + size] == open(folder.paths[3], "rb").read()
    without_index = tmp_path / "copy"
    without_index.mkdir()
    for shard in result.shards:
        (without_index / shard.name).write_bytes(shard.read_bytes())
    for shards in (ShardDataset(shard_files(result.pattern)), ShardDataset(shard_files(str(tmp_path / "shards"))),
                   ShardDataset(sorted(without_index.glob("*.tar")))):  # no shards.json: indexed from the headers
        assert len(shards) == 7 and shards.channels == 1
        for i in range(7):
            assert torch.equal(shards[i]["image"], folder[i]["image"]) and shards[i]["label"] == folder[i]["label"]
    assert folder[6]["image"].max() > 100 / 255  # 16-bit range kept (8-bit reading would saturate it)
    assert ShardDataset(shard_files(result.pattern)).class_names == ["class0", "class1"]


def test_open_data_reads_a_subset_of_shards_with_a_labelled_holdout(tmp_path):
    _pack(_folder_16bit(tmp_path / "src", per_class=(8, 8)), tmp_path / "shards", 4)
    splits = open_data(str(tmp_path / "shards" / "shard-{000000..000002}.tar"), holdout_fraction=0.25)
    assert (len(splits.train), len(splits.queries), splits.num_classes, splits.channels) == (9, 3, 2, 1)
    assert "labelled images from" in splits.description


def test_a_pattern_of_packed_folders_reads_every_shard_of_each(tmp_path, monkeypatch):
    _pack(_folder_16bit(tmp_path / "src"), tmp_path / "part-0", 3)
    _pack(_folder_16bit(tmp_path / "src1", per_class=(2, 2)), tmp_path / "part-1", 3)
    files = shard_files(str(tmp_path / "part-{0..1}"))
    assert [f"{f.parent.name}/{f.name}" for f in files] == [
        "part-0/shard-000000.tar", "part-0/shard-000001.tar", "part-0/shard-000002.tar",
        "part-1/shard-000000.tar", "part-1/shard-000001.tar"]
    both = ShardDataset(files)
    assert len(both) == 11 and torch.equal(both[7]["image"], ShardDataset(files[3:])[0]["image"])
    monkeypatch.setattr(shards_module, "MAX_OPEN_SHARDS", 2)  # random access over 5 shards, 2 open at a time
    reads = [both[i]["image"] for i in (10, 0, 4, 8, 1, 10)]
    assert len(both._handles) == 2 and torch.equal(reads[0], reads[-1])
    assert all(torch.equal(image, ShardDataset(files)[i]["image"]) for image, i in zip(reads, (10, 0, 4, 8, 1, 10)))


def _crop_jitter(image):
    return image + 0.1 * torch.rand(image.shape)


def _batches(dataset, start, total, workers):
    stream = AugmentedStream(dataset, _crop_jitter, seed=5)
    sampler = StreamSampler(batch_size=3, total_steps=total, start_step=start)
    loader = DataLoader(stream, batch_size=3, sampler=sampler, num_workers=workers)
    return [(b["image"], b["position"]) for b in loader]


def test_resuming_at_step_k_serves_the_uninterrupted_batches(tmp_path):
    result = _pack(_folder_16bit(tmp_path / "src"), tmp_path / "shards", 2)
    shards = ShardDataset(shard_files(result.pattern))
    whole = _batches(shards, 0, 6, workers=0)  # 18 positions: more than two epochs of 7 samples
    resumed = _batches(ShardDataset(shard_files(result.pattern)), 4, 6, workers=2)
    assert len(resumed) == 2
    for (a, pa), (b, pb) in zip(whole[4:], resumed):
        assert torch.equal(pa, pb) and torch.equal(a, b)
    assert not torch.equal(whole[0][0], whole[1][0])


def _with_corrupt_member(tmp_path):
    source = _folder_16bit(tmp_path / "src")
    bad = source / "class0" / "2.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated: the header survives, the pixels do not
    return _pack(source, tmp_path / "shards", 3)


def test_a_corrupt_member_is_one_error_naming_shard_and_member(tmp_path):
    result = _with_corrupt_member(tmp_path)
    shards = ShardDataset(shard_files(result.pattern))
    with pytest.raises(DataError) as error:
        shards[2]
    message = str(error.value)
    assert "shard-000000.tar" in message and "000000000002.png" in message and "skip_bad_files" in message


def test_a_corrupt_member_is_skipped_and_listed_with_skip_bad_files(tmp_path):
    result = _with_corrupt_member(tmp_path)
    log = tmp_path / "bad_files.txt"
    shards = open_data(result.pattern, skip_bad_files=True, bad_files_log=log).train  # as pretrain opens it
    items = [shards[i] for i in range(len(shards))]
    assert items[2]["path"].endswith("shard-000001.tar/000000000003.png")  # the next readable member
    assert read_bad_files(log) == [str(tmp_path / "shards" / "shard-000000.tar" / "000000000002.png")]
    assert sum(item["path"].endswith("000000000002.png") for item in items) == 0


def test_patterns_without_files_are_one_clear_error(tmp_path):
    _pack(_folder_16bit(tmp_path / "src"), tmp_path / "shards", 3)
    with pytest.raises(DataError, match="matches no file"):
        open_data(str(tmp_path / "nowhere" / "shard-{000000..000002}.tar"))
    with pytest.raises(DataError, match="2 of the 5 shards"):
        open_data(str(tmp_path / "shards" / "shard-{000000..000004}.tar"))


def test_a_failed_pack_leaves_nothing_behind(tmp_path, monkeypatch):
    import sslkit.data.shard_pack as shard_pack

    source = _folder_16bit(tmp_path / "src")
    real = shard_pack.sample_bytes

    def failing(dataset, index):
        if index == 5:
            raise OSError("disk full")
        return real(dataset, index)

    monkeypatch.setattr(shard_pack, "sample_bytes", failing)
    with pytest.raises(OSError):
        _pack(source, tmp_path / "out" / "shards", 2)
    assert list((tmp_path / "out").iterdir()) == []  # no half index, no shards, no temporary folder


def test_the_multicrop_stream_makes_the_same_views_from_shards_as_from_the_folder(tmp_path):
    """8-bit members take the same uint8 decode path as 8-bit files (crops cut before going to float)."""
    from sslkit.data.augment import MultiCropAugmentation

    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp_path / "src" / f"class{c}").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "src" / f"class{c}" / f"{i}.png")
    folder = ImageFolderDataset(tmp_path / "src")
    shards = ShardDataset(shard_files(_pack(tmp_path / "src", tmp_path / "shards", 4).pattern))
    augmentation = MultiCropAugmentation(16, 8, n_global=2, n_local=2, mean=(0.5,) * 3, std=(0.25,) * 3, channels=3)
    assert augmentation.accepts_uint8 and shards.item(0, keep_uint8=True)["image"].dtype == torch.uint8
    from_folder, from_shards = AugmentedStream(folder, augmentation, seed=3), AugmentedStream(shards, augmentation, seed=3)
    for position in range(8):
        a, b = from_folder[position]["image"], from_shards[position]["image"]
        for kind in ("global", "local"):
            for x, y in zip(a[kind], b[kind]):
                assert torch.equal(x, y)
