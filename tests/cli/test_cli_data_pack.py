"""`sslkit data pack` end to end: the built-in digits into 3 shards, then `sslkit pretrain` and `sslkit evaluate`
reading them through a brace pattern, and the refusal to overwrite a non-empty --out."""

import json
from pathlib import Path

import pytest

from sslkit.cli import main
from tiny_overrides import tiny_dinov2

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "dinov2-tiny.yaml")


@pytest.mark.slow  # a tiny pretrain (4 steps) and a rankme evaluation: about 10 s
def test_pack_digits_then_pretrain_and_evaluate_on_the_shards(tmp_path, capsys):
    shards = tmp_path / "shards"
    assert main(["data", "pack", "digits", "--out", str(shards), "--shard-size", "500", "--size", "16",
                 "--no-progress"]) == 0
    pattern = str(shards / "shard-{000000..000002}.tar")
    assert pattern in capsys.readouterr().out
    index = json.loads((shards / "shards.json").read_text())
    assert [s["count"] for s in index["shards"]] == [500, 500, 437] and index["class_names"][9] == "9"
    run = tmp_path / "run"
    tiny = tiny_dinov2({"optim.epochs": 1, "optim.warmup_epochs": 0.25, "dinov2.warmup_teacher_temp_epochs": 0.5})
    assert main(["pretrain", "--recipe", RECIPE, "--data", pattern, "--out", str(run), *tiny]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["steps"] == 4 and 0.0 <= report["knn_top1"]["pretrained"] <= 1.0
    # The labelled shards give the kNN monitor its 10 % hold-out, as a labelled folder would.
    assert "labelled images from" in capsys.readouterr().out
    out = tmp_path / "evaluation"
    assert main(["evaluate", str(run), "--data", pattern, "--protocols", "rankme", "--image-size", "16",
                 "--no-cache", "--out", str(out)]) == 0
    evaluation = json.loads((out / "report.json").read_text())
    assert evaluation["data"]["splits"] == {"train": 1293, "test": 144}


def test_pack_refuses_a_non_empty_out_without_overwrite(tmp_path, capsys):
    out = tmp_path / "shards"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    assert main(["data", "pack", "digits", "--out", str(out), "--shard-size", "100", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert main(["data", "pack", "digits", "--out", str(out), "--shard-size", "0", "--no-progress"]) == 2
    assert "--shard-size must be at least 1, got 0" in capsys.readouterr().err
    assert main(["data", "pack", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "o").exists()
