from __future__ import annotations

import json

import pytest

from sslkit.cli import main


@pytest.mark.slow
def test_cli_flops_curriculum_writes_ratio(tmp_path, capsys):
    out = tmp_path / "flops.json"
    code = main(["flops", "recipes/dinov2-vits16.yaml", "model.arch=vit_base", "trainer.devices=1",
                 "--stages", "0.75:112:48,0.25:224:96", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert 2.1 <= result["ratio_to_full_resolution"] <= 2.4
    assert f"{result['ratio_to_full_resolution']:.3f}x" in printed
    assert [s["global_size"] for s in result["stages"]] == [112, 224]
    assert result["full_resolution_total"] == pytest.approx(result["ratio_to_full_resolution"] * result["total"])


def test_cli_flops_plain_recipe_and_steps(tmp_path, capsys):
    out = tmp_path / "f.json"
    assert main(["flops", "recipes/dinov2-tiny.yaml", "--steps", "7", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["steps"] == 7 and result["ratio_to_full_resolution"] == pytest.approx(1.0)
    assert result["total"] == 7 * result["stages"][0]["step_flops"]


def test_cli_flops_user_errors_exit_2(capsys):
    assert main(["flops", "recipes/dinov2-vits16.yaml", "--stages", "0.5:112:48"]) == 2
    assert "sum to 1" in capsys.readouterr().err
    assert main(["flops", "recipes/nope.yaml"]) == 2
    assert main(["flops", "recipes/dinov2-vits16.yaml", "model.arhc=vit_base"]) == 2
