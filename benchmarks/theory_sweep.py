"""Linear SSL theory (arXiv 2505.12477): cost of the closed forms and of the phase-diagram sweep.

Measured side by side in one run (wall clock, best of ``--repeats``):

closed forms
    Additive-noise moments, RC closed form (Theorem 1) and JE closed form (Theorem 2) at d ∈ {6, 64, 512}
    (n = 4d samples), and at d = 6 the gradient descent / ascent of the test suite that reaches the same
    optimum to 1e-10: the closed form's speed-up and the achieved agreement.
sweep
    ``sslkit.theory.linear.phase_diagram`` on the default 41 × 41 grid (γ_s = 1, c_s = 0.1, k = 1) with
    exact moments, and on a 21 × 21 grid with Monte Carlo moments (n = 512, 256 views per sample, the
    spec's default), with the agreement of the closed forms with the inequalities.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/theory_sweep.py [--repeats 3] [--skip-monte-carlo]

No target exists for this part of issue #11; the figures document what a sweep costs.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from sslkit.functional import linear_theory as lt
from sslkit.theory import linear as tl


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def problem(d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4 * d, d)) * np.sqrt(np.geomspace(4.0, 0.5, d))
    a = rng.standard_normal((d, d))
    return x, 0.3 * a @ a.T / d + 0.2 * np.eye(d)


def rc_descent(m, k: int, tol: float = 1e-13, max_steps: int = 200_000):
    rng = np.random.default_rng(0)
    s, b = m.second_moment, m.cross
    enc, dec = 0.1 * rng.standard_normal((k, m.d)), 0.1 * rng.standard_normal((m.d, k))
    step = 0.2 / (np.linalg.eigvalsh(s)[-1] * max(1.0, np.linalg.norm(b, 2)))
    for steps in range(1, max_steps + 1):
        grad = 2.0 * (dec @ enc @ s - b)
        gd, ge = grad @ enc.T, dec.T @ grad
        dec, enc = dec - step * gd, enc - step * ge
        if max(np.abs(gd).max(), np.abs(ge).max()) < tol:
            break
    return enc, dec, steps


def je_ascent(m, k: int, tol: float = 1e-13, max_steps: int = 50_000):
    rng = np.random.default_rng(0)
    s, g = m.second_moment, m.mean_gram

    def normalise(w):
        vals, vecs = np.linalg.eigh(w @ s @ w.T)
        return (vecs / np.sqrt(vals)) @ vecs.T @ w

    w = normalise(rng.standard_normal((k, m.d)))
    step = 0.5 / np.linalg.eigvalsh(g)[-1]
    for steps in range(1, max_steps + 1):
        grad = 2.0 * (w @ g - (w @ g @ w.T) @ w @ s)
        w = normalise(w + step * grad)
        if np.abs(grad).max() < tol:
            break
    return w, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-monte-carlo", action="store_true")
    args = parser.parse_args()
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cores {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")

    print("\n| d | n | moments | RC closed form | JE closed form |\n|---:|---:|---:|---:|---:|")
    for d in (6, 64, 512):
        x, c = problem(d)
        t_m, m = best_of(lambda: lt.augmentation_moments_additive(x, c), args.repeats)
        t_rc, _ = best_of(lambda: lt.reconstruction_closed_form(m, 2), args.repeats)
        t_je, _ = best_of(lambda: lt.joint_embedding_closed_form(m, 2), args.repeats)
        print(f"| {d} | {4 * d} | {1e3 * t_m:.3f} ms | {1e3 * t_rc:.3f} ms | {1e3 * t_je:.3f} ms |")

    x, c = problem(6)
    m = lt.augmentation_moments_additive(x, c)
    t_rc, rc = best_of(lambda: lt.reconstruction_closed_form(m, 2), args.repeats)
    t_je, je = best_of(lambda: lt.joint_embedding_closed_form(m, 2), args.repeats)
    t_gd, (enc, dec, rc_steps) = best_of(lambda: rc_descent(m, 2), 1)
    t_ga, (w, je_steps) = best_of(lambda: je_ascent(m, 2), 1)
    rc_gap = abs(lt.reconstruction_objective(enc, dec, m) - rc.objective)
    je_gap = abs(lt.joint_embedding_objective(w, m) - je.loss)
    print("\n| d = 6, k = 2 | closed form | iterative (steps) | speed-up | |objective gap| | max |product gap| |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| RC (GD on E, D) | {1e3 * t_rc:.3f} ms | {1e3 * t_gd:.1f} ms ({rc_steps}) | {t_gd / t_rc:.0f}× | "
          f"{rc_gap:.1e} | {np.abs(dec @ enc - rc.product).max():.1e} (D·E) |")
    print(f"| JE (trace-ratio ascent) | {1e3 * t_je:.3f} ms | {1e3 * t_ga:.1f} ms ({je_steps}) | {t_ga / t_je:.0f}× | "
          f"{je_gap:.1e} | {np.abs(w.T @ w - je.weights.T @ je.weights).max():.1e} (WᵀW) |")

    print("\n| sweep | cells | time | per cell | JE agree | RC agree | crossover bracket (γ_s = 1) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    runs = [("exact, 41 × 41, k = 1", 41, dict(moments="exact")),
            ("exact, 41 × 41, k = 4 (d = 8)", 41, dict(moments="exact", k=4))]
    if not args.skip_monte_carlo:
        runs.append(("Monte Carlo, 21 × 21, n = 512, 256 views", 21, dict(moments="monte_carlo", n=512,
                                                                          num_views=256)))
    for label, size, kwargs in runs:
        g, cgrid = tl.default_grids(1.0, 0.1, size)
        t, pd = best_of(lambda: tl.phase_diagram(1.0, 0.1, g, cgrid, **kwargs), 1 if "Monte" in label else args.repeats)
        agree = pd.agreement(pd.settings["agreement_margin"])
        low, high = pd.crossover_bracket()
        print(f"| {label} | {size * size} | {t:.2f} s | {1e3 * t / size**2:.2f} ms | "
              f"{agree['joint_embedding']['agree']}/{agree['joint_embedding']['cells']} | "
              f"{agree['reconstruction']['agree']}/{agree['reconstruction']['cells']} | {low:.3g} – {high:.3g} |")


if __name__ == "__main__":
    main()
