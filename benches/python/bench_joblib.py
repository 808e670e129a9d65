"""The joblib backend ``"vedart"`` against joblib's default, loky, same run.

1. ``GridSearchCV(SVC(), ...)`` on scikit-learn's digits (1,797 images), 5-fold,
   a 3 x 2 grid (30 fits), ``n_jobs=-1``. Target (issue 11): <= 1.0x loky's time.
2. ``Parallel(n_jobs=-1)`` of 100,000 tiny ``delayed(f)(i)`` calls. Target:
   <= 1.0x loky's time.

Both backends are warmed first (workers started, scikit-learn imported in
them), so the figures compare steady-state Parallel calls; contestants are
timed interleaved (see ``_harness``) and the ratios come from this one run.

Usage: python benches/python/bench_joblib.py [--calls N] [--repeat R]
"""

from __future__ import annotations

import argparse

import numpy as np
from _harness import cores, header, measure, median, report
from joblib import Parallel, delayed, parallel_config
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

import vedart.joblib  # noqa: F401  (registers the "vedart" backend)

GRID = {"C": [1, 10, 100], "gamma": [0.001, 0.0001]}


def tiny(x: int) -> int:
    return x + 1


def search(backend: str, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    with parallel_config(backend=backend, n_jobs=-1):
        found = GridSearchCV(SVC(), GRID, cv=5).fit(X, y)
    return found.cv_results_["mean_test_score"]  # type: ignore[no-any-return]


def calls(backend: str, n: int) -> list[int]:
    with parallel_config(backend=backend, n_jobs=-1):
        return Parallel()(delayed(tiny)(i) for i in range(n))  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    header(__file__)
    X, y = load_digits(return_X_y=True)
    for backend in ("loky", "vedart"):
        search(backend, X[:200], y[:200])
        calls(backend, 1000)

    scores: dict[str, np.ndarray] = {}

    def check_scores(name: str, result: object) -> None:
        scores.setdefault("first", result)  # type: ignore[arg-type]
        if not np.array_equal(scores["first"], result):  # type: ignore[arg-type]
            raise AssertionError(f"{name} found other scores")

    times = measure(
        {"loky": lambda: search("loky", X, y), "vedart": lambda: search("vedart", X, y)},
        args.repeat,
        check_scores,
    )
    report(
        f"GridSearchCV(SVC) on digits, 30 fits, n_jobs=-1 ({cores()} cores)", times, "loky"
    )
    grid_ratio = median(times, "vedart") / median(times, "loky")

    expected = [i + 1 for i in range(args.calls)]

    def check_calls(name: str, result: object) -> None:
        if result != expected:
            raise AssertionError(f"{name} returned a wrong result")

    times = measure(
        {"loky": lambda: calls("loky", args.calls), "vedart": lambda: calls("vedart", args.calls)},
        args.repeat,
        check_calls,
    )
    report(f"{args.calls:,} tiny delayed(f)(i) calls, n_jobs=-1", times, "loky")
    calls_ratio = median(times, "vedart") / median(times, "loky")

    print("\nvedart / loky (medians, this run):")
    print(f"  GridSearchCV              {grid_ratio:6.3f}x   (target <= 1.0x)")
    print(f"  {args.calls:,} tiny calls     {calls_ratio:6.3f}x   (target <= 1.0x)")


if __name__ == "__main__":
    main()
