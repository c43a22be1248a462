"""End-to-end ``sslkit grok`` runs on capped step budgets (seconds)."""

import json

import pytest

from sslkit.cli import main


@pytest.mark.slow
def test_digits_race_writes_curves_steps_and_plot(tmp_path, capsys):
    out = tmp_path / "grok"
    code = main(["grok", "--setup", "digits", "--reg", "wd", "grokalign", "--seeds", "2", "--max-steps", "10",
                 "--eval-every", "5", "--lam", "0.1", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "grok.json").read_text())
    assert set(report["arms"]) == {"wd", "grokalign"}
    assert report["configs"]["wd"]["lam"] == 0.0 and report["configs"]["grokalign"]["lam"] == 0.1
    assert report["configs"]["wd"]["weight_decay"] == report["configs"]["grokalign"]["weight_decay"] > 0
    for arm in report["arms"].values():
        assert [r["seed"] for r in arm["runs"]] == [0, 1]
        for run in arm["runs"]:
            curves = run["curves"]
            assert curves["step"] == [0, 5, 10] and run["steps_run"] == 10
            assert len(curves["test_acc"]) == 3 and all(0 <= a <= 1 for a in curves["test_acc"])
            assert all(-1 <= a <= 1 for a in curves["train_alignment"])
            assert run["wall_time_s"] >= run["train_time_s"] > 0
            assert run["steps_to_threshold"] is None  # x8 init: nowhere near 0.85 after 10 steps
    # Different seeds start from different weights.
    wd_runs = report["arms"]["wd"]["runs"]
    assert wd_runs[0]["curves"]["jacobian_norm"][0] != wd_runs[1]["curves"]["jacobian_norm"][0]
    assert report["race"]["seeds"] == 2 and report["race"]["seeds_meeting_target"] == 0
    assert (out / "grok.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "steps to test accuracy" in text and "grokalign" in text and ">10" in text


@pytest.mark.slow
def test_modadd_runs_and_can_stop_at_the_threshold(tmp_path):
    out = tmp_path / "modadd"
    # A threshold of 0.01 is met at the first evaluation after training starts.
    assert main(["grok", "--setup", "modadd", "--prime", "7", "--reg", "grokalign", "--seeds", "1",
                 "--max-steps", "50", "--eval-every", "5", "--threshold", "0.01", "--out", str(out)]) == 0
    report = json.loads((out / "grok.json").read_text())
    run = report["arms"]["grokalign"]["runs"][0]
    assert run["steps_to_threshold"] == 5 and run["steps_run"] == 5
    assert report["configs"]["grokalign"]["prime"] == 7 and report["race"] is None


@pytest.mark.parametrize("args, message", [
    (["--lam", "-1"], "lam must be >= 0"),
    (["--reg", "grokalign", "--lam", "0"], "--lam > 0"),
    (["--threshold", "1.5"], "threshold"),
    (["--seeds", "0"], "--seeds"),
])
def test_bad_values_fail_with_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    assert main(["grok", "--setup", "modadd", "--max-steps", "2", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
