"""benchmarks/data_throughput.py runs end to end on a few tiny images (so it cannot rot), and its pieces hold."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def throughput():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("data_throughput", ROOT / "benchmarks" / "data_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_round_on_eight_tiny_images_writes_the_results(throughput, tmp_path):
    out = tmp_path / "r.json"
    result = throughput.main(["--rounds", "1", "--per-round", "2", "--images", "8", "--size", "80x60",
                              "--out", str(out)])
    written = json.loads(out.read_text())
    folder = written["measured"]["folder"]
    assert folder["sslkit"]["median"] > 0 and folder["reference"]["median"] > 0
    ratio = folder["ratio_sslkit_over_reference"]["median"]
    assert ratio == pytest.approx(folder["sslkit"]["median"] / folder["reference"]["median"])
    cores = written["cores_to_feed_one_h100"]["folder"]["vit_small_patch16"]["sslkit"]
    assert cores == -(-written["h100"]["vit_small_patch16"]["samples_per_s"] // folder["sslkit"]["median"])
    assert result["settings"]["images"] == 8 and "shards_note" in written


def test_both_pipelines_make_the_same_views_from_a_folder_and_from_shards(throughput, tmp_path):
    import tarfile

    folder = throughput.make_photo_folder(tmp_path / "im", 3, (80, 60), seed=1)
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=f"{path.stem}.jpg")
    pipelines = [(f"folder {name}", make) for name, make in throughput.folder_pipelines(folder, seed=0).items()]
    pipelines += [(f"shard {name}", make)
                  for name, make in throughput.shard_pipelines([str(tmp_path / "s.tar")], seed=0).items()]
    assert len(pipelines) == 4
    for name, make in pipelines:
        sample = make(1)
        views = sample["image"] if name == "folder sslkit" else sample
        assert [tuple(v.shape) for v in views["global"]] == [(3, 224, 224)] * 2, name
        assert [tuple(v.shape) for v in views["local"]] == [(3, 96, 96)] * 8, name


def test_h100_demand_counts_vit_flops(throughput):
    demand = throughput.h100_demand()
    small, base = demand["vit_small_patch16"], demand["vit_base_patch16"]
    # ViT-B/16 at 224: 17.6 GMACs per image (timm's table) = 35.1 GFLOPs; ViT-S/16 about a quarter of it.
    assert base["forward_gflops"]["224"] == pytest.approx(35.1, rel=0.01)
    assert 3.7 < base["gflops_per_sample"] / small["gflops_per_sample"] < 4.1
    per_sample = 3 * (2 * base["forward_gflops"]["224"] + 8 * base["forward_gflops"]["96"]) \
        + 2 * base["forward_gflops"]["224"]
    assert base["gflops_per_sample"] == pytest.approx(per_sample)
    assert base["samples_per_s"] == pytest.approx(0.4 * 989e12 / (per_sample * 1e9))


def test_the_reference_blurs_global_one_always_and_never_solarises_it(throughput):
    reference = throughput.ReferenceMultiCrop()
    blur_of_global_1 = reference.global_1.transforms[1]
    assert blur_of_global_1.p == 1.0 and not any(isinstance(t, type(reference.global_2.transforms[2]))
                                                  for t in reference.global_1.transforms)
    assert reference.global_2.transforms[1].p == pytest.approx(0.1)
    assert reference.local.transforms[1].p == pytest.approx(0.5)
