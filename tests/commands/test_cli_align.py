"""`sslkit align` end to end on 'shapes': a freshly pretrained tiny run, a random tiny ViT export and a features
file; align.json recomputed from the cached features, the plots, the one-model case and the user errors."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sslkit.analysis.align import SHAPES_JOINT_LATENTS, latent_identifiability, shapes_latents
from sslkit.cli import main
from sslkit.data.builtin import ShapesDataset
from sslkit.eval.models import compute_features, save_features_file
from sslkit.functional.metrics import cka, cknna, mutual_knn
from sslkit.nn.export import save_backbone
from sslkit.nn.vit import ViT
from tiny_overrides import tiny_dinov2

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "dinov2-tiny.yaml")
# The shared tiny overrides (tests/tiny_overrides.py): a 2-block width-64 ViT on 16-px images, 8 steps.
TINY = tiny_dinov2()
SAMPLES = 300


def pooled_pixels(images: torch.Tensor) -> torch.Tensor:
    """A model-free representation: 4×4-average-pooled pixels, (B, 3·8·8)."""
    return F.avg_pool2d(images, 4).flatten(1)


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    root = tmp_path_factory.mktemp("align")
    cache = root / "cache"
    trained = root / "tiny-shapes"
    assert main(["pretrain", "--recipe", RECIPE, "--data", "shapes", "--out", str(trained), *TINY]) == 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        random_vit = ViT(img_size=16, patch_size=4, embed_dim=64, depth=2, num_heads=2)
    meta = json.loads((trained / "backbone.json").read_text())
    save_backbone(random_vit, root / "random-vit", mean=meta["mean"], std=meta["std"])
    x, y = compute_features(pooled_pixels, "shapes", "test", cache_dir=cache)
    save_features_file(root / "pixels.safetensors", {"test": (x, y)})
    models = [str(trained), str(root / "random-vit"), str(root / "pixels.safetensors")]
    out = root / "out"
    assert main(["align", *models, "--data", "shapes", "--samples", str(SAMPLES), "--cache-dir", str(cache),
                 "--out", str(out)]) == 0
    return {"root": root, "cache": cache, "models": models, "out": out}


@pytest.mark.slow
def test_align_json_equals_the_metrics_on_the_cached_features(aligned):
    report = json.loads((aligned["out"] / "align.json").read_text())
    names = ["tiny-shapes", "random-vit", "pixels.safetensors"]
    assert [m["name"] for m in report["models"]] == names
    assert report["data"] == {"source": "shapes", "split": "test", "samples": 1000, "split_size": 1000}
    alignment = report["alignment"]
    assert alignment["names"] == names and alignment["n"] == SAMPLES and alignment["k"] == 10
    assert alignment["random_baseline"]["mutual_knn"] == pytest.approx(10 / (SAMPLES - 1))
    assert set(alignment["matrices"]) == {"cka_linear", "cka_rbf", "mutual_knn", "cknna"}
    feats = [compute_features(m, "shapes", "test", cache_dir=aligned["cache"])[0].double()
             for m in aligned["models"][:2]]
    feats.append(compute_features(aligned["models"][2], None, "test")[0].double())
    assert [f.shape[1] for f in feats] == [64, 64, 192]
    # The documented subset rule: a seeded permutation of the 1000 rows, first --samples, sorted.
    idx = torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:SAMPLES].sort().values
    sub = [f[idx] for f in feats]
    refs = {"cka_linear": cka, "cka_rbf": lambda a, b: cka(a, b, kernel="rbf"),
            "mutual_knn": lambda a, b: mutual_knn(a, b, k=10), "cknna": lambda a, b: cknna(a, b, k=10)}
    for metric, fn in refs.items():
        matrix = alignment["matrices"][metric]
        for i in range(3):
            assert matrix[i][i] == pytest.approx(1.0, abs=1e-9)
            for j in range(3):
                assert matrix[i][j] == pytest.approx(fn(sub[i], sub[j]), abs=1e-9), (metric, i, j)
    perm = torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(0))
    null = alignment["permutation_null"]["mutual_knn"]
    assert null[0][1] == pytest.approx(mutual_knn(sub[0], sub[1][perm], k=10), abs=1e-12)
    # Identifiability against the true factors of shapes/test, every row, latents read in dataset order.
    ident = report["identifiability"]
    assert ident["latents"] == ["shape", "color", "scale", "position", "rotation", "all"]
    assert ident["dims"] == {"shape": 10, "color": 3, "scale": 1, "position": 2, "rotation": 2, "all": 8}
    assert ident["joint"] == list(SHAPES_JOINT_LATENTS) and ident["fit_size"] == 800
    latents, _ = shapes_latents(ShapesDataset("test"))
    expected = latent_identifiability(dict(zip(names, feats)), latents, joint=SHAPES_JOINT_LATENTS)
    for name in names:
        for latent in ident["latents"]:
            assert ident["r2"][name][latent] == pytest.approx(expected.r2[name][latent], abs=1e-9)
            assert ident["mcc"][name][latent] == pytest.approx(expected.mcc[name][latent], abs=1e-9)
            assert ident["r2"][name][latent] <= 1.0 and 0.0 <= ident["mcc"][name][latent] <= 1.0
    # Pixels carry the shape's colour linearly; they were never told about it.
    assert ident["r2"]["pixels.safetensors"]["color"] > 0.3
    assert report["settings"]["ridge"] == 1e-6 and report["settings"]["pooling"] == "cls"
    for plot in ("cka_linear", "cka_rbf", "mutual_knn", "cknna", "identifiability"):
        assert (aligned["out"] / f"{plot}.png").read_bytes()[:4] == b"\x89PNG", plot
        assert (aligned["out"] / f"{plot}.png").stat().st_size > 5000
    assert sorted(report["plots"]) == sorted(f"{p}.png" for p in ("cka_linear", "cka_rbf", "mutual_knn", "cknna",
                                                                    "identifiability"))


@pytest.mark.slow
def test_one_model_gives_identifiability_only(aligned, capsys):
    out = aligned["root"] / "one"
    assert main(["align", aligned["models"][0], "--data", "shapes", "--cache-dir", str(aligned["cache"]),
                 "--out", str(out)]) == 0
    report = json.loads((out / "align.json").read_text())
    assert report["alignment"] is None and any("One model" in note for note in report["notes"])
    assert report["identifiability"]["names"] == ["tiny-shapes"]
    assert sorted(p.name for p in out.glob("*.png")) == ["identifiability.png"]
    assert "identifiability only" in " ".join(capsys.readouterr().out.split())  # rich wraps at 80 columns


@pytest.mark.slow
def test_user_errors_exit_2_with_one_sentence(aligned, capsys, tmp_path):
    run = aligned["models"][0]
    assert main(["align", run, "--data", "digits", "--out", str(tmp_path / "a")]) == 2
    assert "at least two models" in capsys.readouterr().err
    x, y = compute_features(pooled_pixels, "shapes", "test", cache_dir=aligned["cache"])
    save_features_file(tmp_path / "short.safetensors", {"test": (x[:50], y[:50])})
    assert main(["align", run, str(tmp_path / "short.safetensors"), "--data", "shapes", "--cache-dir",
                 str(aligned["cache"]), "--out", str(tmp_path / "b")]) == 2
    assert "different numbers of samples" in capsys.readouterr().err
    # Rows in another order than the dataset: caught by the labels stored with them.
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(3))
    save_features_file(tmp_path / "shuffled.safetensors", {"test": (x[order], y[order])})
    assert main(["align", run, str(tmp_path / "shuffled.safetensors"), "--data", "shapes", "--cache-dir",
                 str(aligned["cache"]), "--out", str(tmp_path / "c")]) == 2
    assert "order" in capsys.readouterr().err
    assert main(["align", run, run, "--data", "shapes", "--metrics", "cka,svcca"]) == 2
    assert "Unknown alignment metric" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_help_lists_metrics_and_outputs(capsys):
    with pytest.raises(SystemExit) as info:
        main(["align", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for word in ("cknna", "mutual_knn", "identifiability.png", "--samples", "k/(n−1)"):
        assert word in text, word
