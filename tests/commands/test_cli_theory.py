"""`sslkit theory linear` end to end: the JSON matches the inequalities, the worked example and the plot."""

import json

import numpy as np
import pytest

from sslkit.cli import main


@pytest.fixture(scope="module")
def run_default(tmp_path_factory):
    out = tmp_path_factory.mktemp("theory") / "linear"
    code = main(["theory", "linear", "--gamma-s", "1", "--c-s", "0.1", "--grid", "21", "--k", "1",
                 "--out", str(out)])
    return code, out


def test_writes_plot_and_json_that_follow_the_inequalities(run_default):
    code, out = run_default
    assert code == 0
    assert (out / "phase_diagram.png").stat().st_size > 20_000
    assert not list(out.glob(".*.tmp*"))  # written atomically, nothing left behind
    payload = json.loads((out / "phase_diagram.json").read_text())
    pd = payload["phase_diagram"]
    gamma_n, c_n = np.array(pd["gamma_n"]), np.array(pd["c_n"])
    assert len(gamma_n) == len(c_n) == 21
    gn, cn = np.meshgrid(gamma_n, c_n, indexing="ij")
    je = np.array(pd["empirical"]["je_keeps_signal"])
    rc = np.array(pd["empirical"]["rc_keeps_signal"])
    np.testing.assert_array_equal(je, cn > gn * 0.1 / 1.0)
    np.testing.assert_array_equal(rc, cn > gn**2 * 1.1 - gn)
    np.testing.assert_array_equal(np.array(pd["empirical"]["paradigm"]), je.astype(int) + 2 * rc.astype(int))
    assert pd["agreement"]["joint_embedding"]["agree"] == pd["agreement"]["joint_embedding"]["cells"] == 441
    assert pd["agreement"]["reconstruction"]["agree"] == 441
    low, high = pd["empirical"]["crossover_bracket_gamma_n"]
    assert low < 1.0 < high and pd["theory"]["crossover"] == {"gamma_n": 1.0, "c_n": 0.1}


def test_worked_example_and_probe_in_json_and_terminal(run_default, capsys):
    _, out = run_default
    payload = json.loads((out / "phase_diagram.json").read_text())
    rows = {row["gamma_n"]: row for row in payload["worked_example"]}
    assert rows[0.3]["je_threshold"] == pytest.approx(0.03) and rows[0.3]["rc_needs"] == 0.0
    assert rows[10.0]["je_threshold"] == pytest.approx(1.0) and rows[10.0]["rc_threshold"] == pytest.approx(100.0)
    assert rows[0.3]["lower_threshold"] == "reconstruction" and rows[10.0]["lower_threshold"] == "joint_embedding"
    assert all(row["closed_forms_confirm"] for row in rows.values())
    probe = payload["probe"]
    acc = {name: np.array(v) for name, v in probe["accuracy"].items()}
    assert probe["regimes"][1].startswith("between")
    assert acc["joint_embedding"][1, -1] > 0.95 and acc["reconstruction"][1, -1] < 0.6  # JE's advantage
    assert np.all(acc["supervised"][:, -1] > 0.95)


def test_terminal_output(tmp_path, capsys):
    code = main(["theory", "linear", "--grid", "5", "--no-probe", "--worked-gamma-n", "0.3", "10",
                 "--out", str(tmp_path / "o")])
    assert code == 0
    text = capsys.readouterr().out
    assert "Worked example" in text and "c_n > 0.03" in text and "c_n > 100" in text and "always" in text
    assert "crossover" in text
    payload = json.loads((tmp_path / "o" / "phase_diagram.json").read_text())
    assert payload["probe"] is None


def test_monte_carlo_moments_option(tmp_path):
    code = main(["theory", "linear", "--grid", "5", "--moments", "monte-carlo", "--samples", "200", "--views", "32",
                 "--no-probe", "--out", str(tmp_path / "mc")])
    assert code == 0
    pd = json.loads((tmp_path / "mc" / "phase_diagram.json").read_text())["phase_diagram"]
    assert pd["settings"]["moments"] == "monte_carlo" and pd["settings"]["num_views"] == 32
    for counts in pd["agreement"].values():  # counted away from the boundary (relative margin > 0.1)
        assert counts["agree"] == counts["cells"] > 15


@pytest.mark.parametrize("argv, needle", [
    (["--gamma-s", "0"], "--gamma-s"),
    (["--c-s", "-1"], "--c-s"),
    (["--grid", "1"], "--grid"),
    (["--gamma-n-range", "5", "1"], "--gamma-n-range"),
])
def test_bad_values_are_one_line_errors(argv, needle, tmp_path, capsys):
    assert main(["theory", "linear", *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
