"""Task-prior study: batched probes, statistics, ranking of graded models, plots."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.datasets import load_digits

from sslkit.eval.taskprior import (
    accuracy_summary,
    build_prior,
    probe_tasks,
    task_prior_moments,
    task_prior_study,
)
from sslkit.functional import taskprior as tp


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = torch.tensor(d.data[:500], dtype=torch.float32)
    return x - x.mean(0), torch.tensor(d.target[:500])


def _graded_models(x, noises=(0.0, 1.0, 2.0, 4.0, 8.0), seed=0):
    """Random projections of the digits plus noise of growing size: quality falls with the noise."""
    g = torch.Generator().manual_seed(seed)
    z = x @ torch.randn(x.shape[1], 32, generator=g)
    z = z / z.std()
    return {f"noise {s:g}": z + s * torch.randn(z.shape, generator=g) for s in noises}


def test_batched_probe_equals_separate_probes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 6, generator=g)
    tasks = torch.stack([(x[:, 0] > 0).long(), (x[:, 1] + 0.5 * x[:, 2] > 0.3).long(),
                         torch.randint(0, 2, (1000,), generator=g)])
    together = probe_tasks(x, tasks, min_steps=400, seed=3)
    for t in range(3):
        # Adam treats every weight on its own, so a task trained alone ends where it ends in the batch.
        alone = probe_tasks(x, tasks[t:t + 1], min_steps=400, seed=3)
        assert float(alone.heldout[0]) == pytest.approx(float(together.heldout[t]), abs=1 / 200 + 1e-9)
    assert together.heldout[0] > 0.95 and together.heldout[1] > 0.95  # linearly separable tasks
    assert 0.3 < together.heldout[2] < 0.75  # random labels: chance
    assert together.train_recall.shape == (3,) and together.train_recall[0] > 0.95


def test_multiclass_probe():
    g = torch.Generator().manual_seed(1)
    centres = 4 * torch.randn(4, 6, generator=g)
    labels = torch.randint(0, 4, (400,), generator=g)
    x = centres[labels] + torch.randn(400, 6, generator=g)
    out = probe_tasks(x, labels[None], num_classes=4, epochs=20)
    assert out.train_recall is None and out.heldout[0] > 0.95


def test_accuracy_summary_matches_numpy():
    a = torch.tensor([0.9, 0.5, 0.7, 0.8, 0.6, 0.95])
    s = accuracy_summary(a, worst=2)
    assert s["mean"] == pytest.approx(float(np.mean(a.numpy())), abs=1e-6)
    assert s["variance"] == pytest.approx(float(np.var(a.numpy(), ddof=1)), abs=1e-6)
    assert s["quantiles"]["0.25"] == pytest.approx(float(np.quantile(a.numpy(), 0.25)), abs=1e-6)
    assert [w["task"] for w in s["worst_tasks"]] == [1, 4]


def test_task_prior_moments_match_dense_formula(digits):
    x, y = digits
    e, v = task_prior_moments(x, y, temperature=[1.0, 0.1], center=True)
    de, dv = tp.expectation_variance(model_kernel=tp.center_normalise_kernel(tp.cosine_kernel(x)),
                                     prior_kernel=tp.center_normalise_kernel(tp.label_kernel(y)),
                                     temperature=[1.0, 0.1])
    assert torch.allclose(e, de, rtol=1e-9) and torch.allclose(v, dv, rtol=1e-9)


def test_models_prior_is_the_average_of_the_model_kernels(digits):
    x, _ = digits
    models = _graded_models(x, noises=(0.0, 2.0, 8.0))
    for kernel in ("cosine", "rbf"):
        prior = build_prior("models", models, kernel=kernel, dtype=torch.float64)
        average = sum(tp.model_kernel(f, kernel) for f in models.values()) / 3
        assert torch.allclose(prior.kernel.dense(), average, atol=1e-9)


def test_study_ranks_graded_models_like_the_probes(digits, tmp_path):
    x, y = digits
    study = task_prior_study(_graded_models(x), y, prior="labels", temperatures=[1.0, 1e-5], num_tasks=64,
                             probe_min_steps=400, seed=0)
    expectation = [r.expectation[0] for r in study.results]
    probe_means = [r.probe_summary()["mean"] for r in study.results]
    assert spearmanr(expectation, probe_means)[0] > 0.5
    assert study.correlations["1"]["expectation_vs_mean_accuracy"]["spearman"] == pytest.approx(
        spearmanr(expectation, probe_means)[0])
    assert probe_means[0] > probe_means[-1] + 0.1  # the noise really degrades the probes
    assert study.tasks.shape == (64, 500)
    # JSON and plots
    text = json.dumps(study.to_dict())
    assert "heldout_accuracy" in text and "worst_tasks" in text
    paths = study.save_plots(tmp_path)
    assert [p.name for p in paths] == ["taskprior_accuracy_hist.png", "taskprior_expectation_vs_accuracy.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_study_with_the_models_prior_and_no_probes(digits):
    x, y = digits
    models = _graded_models(x, noises=(0.0, 4.0))
    study = task_prior_study(models, None, prior="models", num_tasks=0, center=False, temperatures=0.5)
    assert study.tasks is None and study.results[0].probe_summary() is None
    prior = sum(tp.cosine_kernel(f) for f in models.values()) / 2
    e, v = tp.expectation_variance(model_kernel=tp.cosine_kernel(models["noise 0"]), prior_kernel=prior, temperature=0.5)
    assert study.results[0].expectation[0] == pytest.approx(float(e), rel=1e-9)
    assert study.results[0].variance[0] == pytest.approx(float(v), rel=1e-9)


def test_label_prior_needs_labels(digits):
    x, y = digits
    partly = y.clone()
    partly[3] = -1
    with pytest.raises(ValueError, match="label prior needs a label"):
        task_prior_study({"a": x}, partly, prior="labels", num_tasks=0)
    with pytest.raises(ValueError, match="same samples"):
        task_prior_study({"a": x, "b": x[:10]}, None, prior="models", num_tasks=0)
