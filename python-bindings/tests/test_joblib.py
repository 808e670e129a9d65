"""The joblib backend ``"vedart"`` (``import vedart.joblib``), with joblib and
scikit-learn as its users."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import joblib
import numpy as np
import pytest
from joblib import Parallel, delayed, parallel_config
from joblib.externals.loky.process_executor import TerminatedWorkerError

import vedart as veda
import vedart.joblib as veda_joblib
from conftest import HANG_TIMEOUT

pytestmark = pytest.mark.timeout(180)


def square(x):
    return x * x


def where(_):
    return os.getpid(), threading.current_thread().name


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"task {x} failed")
    return x


def nap(seconds):
    time.sleep(seconds)
    return seconds


def exit_now(code):
    os._exit(code)


def inner_sum(n):
    # A nested Parallel: inside a worker process it runs sequentially.
    return sum(Parallel(n_jobs=2)(delayed(square)(i) for i in range(n)))


def vedart_parallel(**kwargs):
    return parallel_config(backend="vedart", **kwargs)


def test_importing_registers_the_backend():
    assert joblib.parallel.BACKENDS["vedart"] is veda_joblib.VedaBackend
    with vedart_parallel(n_jobs=2):
        assert Parallel()(delayed(square)(i) for i in range(10)) == [i * i for i in range(10)]


def test_processes_by_default_threads_when_joblib_asks_for_them():
    with vedart_parallel(n_jobs=2):
        pids = {pid for pid, _ in Parallel()(delayed(where)(i) for i in range(8))}
        assert os.getpid() not in pids
        threaded = Parallel(prefer="threads")(delayed(where)(i) for i in range(8))
        assert {pid for pid, _ in threaded} == {os.getpid()}
        assert all(name.startswith("veda-") for _, name in threaded)
        shared: list[int] = []
        Parallel(require="sharedmem")(delayed(shared.append)(i) for i in range(20))
        assert sorted(shared) == list(range(20))


def test_n_jobs_minus_one_is_every_worker_of_the_pool():
    runtime = veda.get_runtime()
    processes = veda._process.ProcessExecutor(runtime).workers
    with vedart_parallel(n_jobs=-1):
        assert joblib.effective_n_jobs() == processes
        assert Parallel()(delayed(square)(i) for i in range(50)) == [i * i for i in range(50)]
    backend = veda_joblib.VedaBackend()
    assert backend.effective_n_jobs(-1) == processes
    assert backend.effective_n_jobs(10_000) == processes
    with pytest.raises(ValueError):
        backend.effective_n_jobs(0)


def test_at_most_n_jobs_batches_of_a_call_run_at_once(runtime_config):
    runtime_config(veda.Config(num_threads=4))
    lock = threading.Lock()
    running = [0, 0]

    def probe(_):
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1

    with vedart_parallel(n_jobs=2, prefer="threads"):
        Parallel(batch_size=1)(delayed(probe)(i) for i in range(30))
    assert 1 <= running[1] <= 2


def test_return_as_generator_streams_results_in_order():
    with vedart_parallel(n_jobs=2):
        results = Parallel(return_as="generator")(delayed(square)(i) for i in range(20))
        assert next(results) == 0
        assert list(results) == [i * i for i in range(1, 20)]
        unordered = Parallel(return_as="generator_unordered")(delayed(square)(i) for i in range(20))
        assert sorted(unordered) == [i * i for i in range(20)]


def test_scikit_learn_scores_equal_the_default_backends_exactly():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.svm import SVC

    X, y = load_digits(return_X_y=True)
    X, y = X[:500], y[:500]
    grid = {"C": [1, 10], "gamma": [0.001, 0.01]}

    expected_scores = cross_val_score(SVC(), X, y, cv=4, n_jobs=2)
    expected_search = GridSearchCV(SVC(), grid, cv=3, n_jobs=2).fit(X, y)
    with parallel_config(backend="vedart"):
        scores = cross_val_score(SVC(), X, y, cv=4, n_jobs=2)
        search = GridSearchCV(SVC(), grid, cv=3, n_jobs=-1).fit(X, y)

    np.testing.assert_array_equal(scores, expected_scores)
    assert search.best_params_ == expected_search.best_params_
    for key in ("mean_test_score", "rank_test_score", "split0_test_score", "split2_test_score"):
        np.testing.assert_array_equal(search.cv_results_[key], expected_search.cv_results_[key])
    assert search.cv_results_["params"] == expected_search.cv_results_["params"]


def test_nested_parallel_in_worker_processes():
    with vedart_parallel(n_jobs=2):
        assert Parallel()(delayed(inner_sum)(n) for n in range(6)) == [
            sum(i * i for i in range(n)) for n in range(6)
        ]


def test_nested_parallel_on_threads_neither_deadlocks_nor_adds_threads(two_threads):
    lock = threading.Lock()
    names: set[str] = set()

    def leaf(i):
        with lock:
            names.add(threading.current_thread().name)
        time.sleep(0.002)
        return i

    def middle(n):
        # Every pool thread may be here, waiting for its own nested batches.
        return sum(Parallel(n_jobs=2, batch_size=1)(delayed(leaf)(i) for i in range(n)))

    with vedart_parallel(n_jobs=2, prefer="threads"):
        results = Parallel(batch_size=1)(delayed(middle)(n) for n in range(12))
    assert results == [sum(range(n)) for n in range(12)]
    assert names and all(name.startswith("veda-blocking-") for name in names)
    assert len(names) <= 2


def test_an_exception_reaches_the_caller_with_the_workers_traceback():
    with vedart_parallel(n_jobs=2):
        with pytest.raises(ValueError, match="task 3 failed") as raised:
            Parallel()(delayed(fail_on)(i, 3) for i in range(8))
    assert "fail_on" in raised.value.veda_remote_traceback
    with vedart_parallel(n_jobs=2, prefer="threads"):
        with pytest.raises(ValueError, match="task 5 failed") as raised:
            Parallel()(delayed(fail_on)(i, 5) for i in range(8))
    # joblib drops __traceback__; the text stays.
    assert "fail_on" in raised.value.veda_remote_traceback


def test_an_error_aborts_the_batches_still_running_in_processes():
    started = time.monotonic()
    with vedart_parallel(n_jobs=2):
        with pytest.raises(ValueError):
            Parallel(batch_size=1)(
                delayed(fail_on)(x, -1) if x == -1 else delayed(nap)(x) for x in [30, -1, 30, 30]
            )
    # The 30-second naps were killed, not waited for.
    assert time.monotonic() - started < 20


def test_a_worker_death_is_joblibs_terminated_worker_error():
    with vedart_parallel(n_jobs=2):
        with pytest.raises(TerminatedWorkerError) as raised:
            Parallel()(delayed(exit_now)(5) for _ in range(2))
        assert isinstance(raised.value, veda.BrokenProcessPoolError)
        assert isinstance(raised.value.__cause__, veda.WorkerCrashedError)
        assert raised.value.__cause__.exit_code == 5
        # The pool replaced the worker.
        assert Parallel()(delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]


def test_a_timeout_raises_and_ends_the_call():
    started = time.monotonic()
    with vedart_parallel(n_jobs=2):
        # joblib raises multiprocessing's TimeoutError, whatever the backend.
        with pytest.raises((TimeoutError, multiprocessing.TimeoutError)):
            Parallel(timeout=0.5, batch_size=1)(delayed(nap)(s) for s in [0.0, 30, 30])
    assert time.monotonic() - started < 20


@pytest.mark.timeout(90)
def test_ctrl_c_interrupts_a_parallel_call_promptly():
    code = textwrap.dedent(
        """
        import sys, time
        import vedart.joblib
        from joblib import Parallel, delayed, parallel_config

        def nap(seconds):
            time.sleep(seconds)

        with parallel_config(backend="vedart", n_jobs=2):
            Parallel(batch_size=1)(delayed(nap)(1) for _ in range(2))  # warm
            print("ready", flush=True)
            try:
                Parallel(batch_size=1)(delayed(nap)(60) for _ in range(8))
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                sys.exit(3)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        interrupted_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, err
    assert "interrupted" in out
    assert time.monotonic() - interrupted_at < 30
