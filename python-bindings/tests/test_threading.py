"""Thread safety of the public API, including the very first use."""

from __future__ import annotations

import threading

import vedart as veda

from conftest import run_in_threads, run_python


def test_ten_threads_at_first_use_all_succeed():
    result = run_python(
        """
        import threading
        import vedart as veda

        barrier = threading.Barrier(10)
        results, errors, runtimes = [], [], set()

        def worker(i):
            try:
                barrier.wait()
                results.append(veda.par_iter(range(100)).map(lambda x: x ** 2).sum())
                runtimes.add(id(veda.get_runtime()))
            except BaseException as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert results == [328350] * 10, results
        assert len(runtimes) == 1, runtimes
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_ten_threads_using_pipelines_scopes_and_spawn_at_once():
    barrier = threading.Barrier(10, timeout=60)

    def worker(i):
        barrier.wait()
        for _ in range(20):
            assert (
                veda.par_iter(range(200)).map(lambda x: x + i).filter(lambda x: x % 2).count()
                == 100
            )
            with veda.scope() as s:
                futures = [s.spawn(pow, i, 2) for _ in range(5)]
            assert [f.result() for f in futures] == [i * i] * 5
            assert veda.spawn(abs, -i).result(timeout=60) == i

    run_in_threads(worker, 10, timeout=120)


def test_init_and_shutdown_race_with_users():
    errors = []
    stop = threading.Event()

    def user():
        while not stop.is_set():
            try:
                assert veda.par_iter(range(50)).sum() == 1225
            except veda.RuntimeStateError:
                # A pipeline caught between shutdown and restart may be refused.
                pass
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=user) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(20):
        veda.shutdown()
        veda.get_runtime()
    stop.set()
    for t in threads:
        t.join(60)
    veda.shutdown()
    assert not errors, errors
