"""`sslkit.theory.linear`: the phase diagram (closed forms on synthetic data vs the two inequalities),
its crossover, the worked example, the plot and the probe experiment's bookkeeping."""

import json

import numpy as np
import pytest

from sslkit.theory import linear as tl


@pytest.fixture(scope="module")
def default_diagram():
    gamma_grid, c_grid = tl.default_grids(1.0, 0.1, 41)
    return tl.phase_diagram(1.0, 0.1, gamma_grid, c_grid, k=1)


def test_default_grid_is_centred_on_the_crossover_and_avoids_ties():
    gamma_grid, c_grid = tl.default_grids(1.0, 0.1, 41)
    assert gamma_grid[20] == pytest.approx(1.0) and gamma_grid[0] == pytest.approx(0.1)
    assert c_grid[0] < tl.je_threshold(gamma_grid[0], 1.0, 0.1) and c_grid[-1] > tl.rc_threshold(10.0, 1.0, 0.1)
    gn, cn = np.meshgrid(gamma_grid, c_grid, indexing="ij")
    assert np.abs(tl.je_margin(1.0, 0.1, gn, cn)).min() > 1e-3
    assert np.abs(tl.rc_margin(1.0, 0.1, gn, cn)).min() > 1e-3


def test_closed_forms_select_the_subspace_the_inequalities_predict(default_diagram):
    pd = default_diagram
    assert pd.overlap_je.shape == pd.overlap_rc.shape == (41, 41)
    # a clean choice in every cell: the map reads the whole signal or none of it
    for overlap in (pd.overlap_je, pd.overlap_rc):
        assert np.abs(overlap - np.round(overlap)).max() < 1e-9
    np.testing.assert_array_equal(pd.empirical_je, pd.theory_je)
    np.testing.assert_array_equal(pd.empirical_rc, pd.theory_rc)
    np.testing.assert_array_equal(pd.paradigm_empirical, pd.paradigm_theory)
    assert set(np.unique(pd.paradigm_empirical)) == {0, 1, 2, 3}  # all four regimes appear
    agreement = pd.agreement()
    for counts in agreement.values():
        assert counts == {"cells": 41 * 41, "agree": 41 * 41, "on_threshold": 0}


def test_threshold_shapes_linear_for_je_and_quadratic_for_rc(default_diagram):
    """Per γ_n row, the smallest c_n at which each closed form keeps the signal brackets the formula;
    JE's empirical threshold grows ∝ γ_n (slope 1 in log-log), RC's ∝ γ_n² at large γ_n (slope 2)."""
    pd = default_diagram
    measured = {}
    for name, kept, formula in (("je", pd.empirical_je, tl.je_threshold(pd.gamma_n, 1.0, 0.1)),
                                ("rc", pd.empirical_rc, tl.rc_threshold(pd.gamma_n, 1.0, 0.1))):
        first = np.argmax(kept, axis=1)  # rows are monotone in c_n: once kept, always kept
        assert all(kept[i, first[i]:].all() and not kept[i, :first[i]].any() for i in range(kept.shape[0]))
        upper = pd.c_n[first]
        lower = np.where(first > 0, pd.c_n[np.maximum(first - 1, 0)], 0.0)
        assert np.all((lower < np.maximum(formula, 0)) | (formula <= 0)) and np.all(upper > formula)
        measured[name] = upper
    top = pd.gamma_n > 3.0
    log_g = np.log(pd.gamma_n[top])
    je_slope = np.polyfit(log_g, np.log(measured["je"][top]), 1)[0]
    rc_slope = np.polyfit(log_g, np.log(measured["rc"][top]), 1)[0]
    rc_formula_slope = np.polyfit(log_g, np.log(tl.rc_threshold(pd.gamma_n[top], 1.0, 0.1)), 1)[0]
    assert je_slope == pytest.approx(1.0, abs=0.1)  # linear
    assert rc_slope == pytest.approx(rc_formula_slope, abs=0.15) and rc_slope > 1.9  # quadratic (→ 2)


def test_crossover_is_at_gamma_s(default_diagram):
    pd = default_diagram
    rows = pd.lower_threshold_by_row()
    below, at, above = pd.gamma_n < 1.0 - 1e-12, np.isclose(pd.gamma_n, 1.0), pd.gamma_n > 1.0 + 1e-12
    assert {r for r, b in zip(rows, below) if b} == {"reconstruction"}
    assert {r for r, a in zip(rows, above) if a} == {"joint_embedding"}
    assert [r for r, a in zip(rows, at) if a] == ["equal"]
    low, high = pd.crossover_bracket()
    assert low == pytest.approx(pd.gamma_n[19]) and high == pytest.approx(pd.gamma_n[21])
    assert pd.crossover_bracket(empirical=False) == (low, high)


@pytest.mark.parametrize("gamma_s, c_s, k, n_nuisance", [(2.0, 0.5, 2, 3), (1.0, 0.0, 1, 1)])
def test_other_signals_and_dimensions(gamma_s, c_s, k, n_nuisance):
    gamma_grid, c_grid = tl.default_grids(gamma_s, c_s, 13)
    pd = tl.phase_diagram(gamma_s, c_s, gamma_grid, c_grid, k=k, n_nuisance=n_nuisance, seed=3)
    assert pd.settings["d"] == k + n_nuisance
    for counts in pd.agreement().values():
        assert counts["agree"] == counts["cells"] > 0
    low, high = pd.crossover_bracket()
    assert high > gamma_s and high == pytest.approx(gamma_grid[7])
    if c_s > 0:
        assert low < gamma_s and low == pytest.approx(gamma_grid[5])
    else:  # an un-augmented signal: JE keeps it for any c_n > 0, RC never does better (both always for γ_n ≤ γ_s)
        assert low is None and pd.empirical_je.all()


def test_ties_are_reported_not_scored():
    pd = tl.phase_diagram(1.0, 0.1, [2.0, 5.0], [0.2, 3.0, 50.0])  # (2, 0.2) sits on the JE line
    assert pd.margin_je[0, 0] == 0.0
    assert pd.agreement()["joint_embedding"] == {"cells": 5, "agree": 5, "on_threshold": 1}


def test_monte_carlo_moments_follow_the_inequalities_away_from_the_boundary():
    gamma_grid, c_grid = tl.default_grids(1.0, 0.1, 9)
    pd = tl.phase_diagram(1.0, 0.1, gamma_grid, c_grid, moments="monte_carlo", n=300, num_views=64, seed=1)
    assert pd.settings["num_views"] == 64 and pd.settings["n"] == 300
    interior = np.abs(pd.overlap_je - np.round(pd.overlap_je)) > 1e-6  # finite samples: never exactly 0 or 1
    assert interior.any()
    for name, counts in pd.agreement(0.1).items():
        assert counts["agree"] == counts["cells"] > 60, name
    low, high = pd.crossover_bracket()  # at γ_n = γ_s exactly, finite samples may break the tie either way
    assert gamma_grid[3] <= low <= 1.0 <= high <= gamma_grid[5] and low < high


def test_worked_example_of_the_spec():
    rows = tl.worked_example(1.0, 0.1, (0.3, 10.0))
    low, high = rows
    assert low["je_threshold"] == pytest.approx(0.03)
    assert low["rc_threshold"] == pytest.approx(0.09 * 1.1 - 0.3) and low["rc_needs"] == 0.0  # always
    assert low["lower_threshold"] == "reconstruction"
    assert high["je_threshold"] == pytest.approx(1.0) and high["rc_threshold"] == pytest.approx(100.0)
    assert high["lower_threshold"] == "joint_embedding"
    assert low["closed_forms_confirm"] and high["closed_forms_confirm"]


def test_signal_selection_for_single_cells():
    je, rc = tl.signal_selection(1.0, 0.1, 10.0, 10.0)  # between the thresholds (1 and 100)
    assert je == pytest.approx(1.0, abs=1e-9) and rc == pytest.approx(0.0, abs=1e-9)
    je, rc = tl.signal_selection(1.0, 0.1, 0.3, 0.01)  # below JE's (0.03), RC always keeps it
    assert je == pytest.approx(0.0, abs=1e-9) and rc == pytest.approx(1.0, abs=1e-9)


def test_to_dict_is_json_and_consistent(default_diagram):
    payload = json.loads(json.dumps(default_diagram.to_dict(), allow_nan=False))
    assert len(payload["gamma_n"]) == len(payload["theory"]["paradigm"]) == 41
    assert payload["theory"]["crossover"] == {"gamma_n": 1.0, "c_n": 0.1}
    assert np.array_equal(payload["empirical"]["paradigm"], payload["theory"]["paradigm"])


def test_plot_has_both_thresholds_and_the_crossover(default_diagram, tmp_path):
    fig = tl.plot_phase_diagram(default_diagram)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert any("JE threshold" in lab for lab in labels) and any("RC threshold" in lab for lab in labels)
    assert any("crossover" in lab for lab in labels)
    assert not any("≠" in lab for lab in labels)  # no disagreement markers
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    fig.savefig(tmp_path / "pd.png")
    assert (tmp_path / "pd.png").stat().st_size > 20_000


def test_probe_experiment_bookkeeping():
    result = tl.probe_experiment(c_n=(0.1, 1000.0), n_values=(32, 512), n_nuisance=4, n_test=500, trials=1)
    assert set(result.accuracy) == {"supervised", "joint_embedding", "reconstruction"}
    assert all(a.shape == (2, 2) and np.all((a >= 0) & (a <= 1)) for a in result.accuracy.values())
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["je_threshold_c_n"] == pytest.approx(1.0) and payload["rc_threshold_c_n"] == pytest.approx(100.0)
    assert result.accuracy["joint_embedding"][1, 1] > 0.95 > 0.6 > result.accuracy["joint_embedding"][0, 1]


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        tl.phase_diagram(0.0, 0.1, [1.0], [1.0])
    with pytest.raises(ValueError):
        tl.phase_diagram(1.0, 0.1, [-1.0], [1.0])
    with pytest.raises(ValueError):
        tl.phase_diagram(1.0, 0.1, [1.0], [1.0], moments="sampled")
    with pytest.raises(ValueError):
        tl.default_grids(1.0, 0.1, 41, gamma_n_range=(2.0, 1.0))
