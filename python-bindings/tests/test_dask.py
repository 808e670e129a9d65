"""``executor="dask"``: pipelines, spawns and scopes on a Dask cluster.

One ``LocalCluster`` (two worker processes, one thread each) serves the
module; each test connects to it with ``veda.init(cluster=...)``. The
end-to-end test against ``dask scheduler`` / ``dask worker`` processes is in
``test_dask_e2e.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import threading
import time
from typing import Any, Iterator

import pytest

from conftest import run_in_threads

import vedart as veda

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    # The scheduler must not rerun a task whose worker died: vedart's rule
    # (see vedart._dask, step 5).
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        local = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
    try:
        yield local
    finally:
        veda.shutdown()
        local.close()


@pytest.fixture(scope="module")
def observer(cluster: Any) -> Iterator[Any]:
    """The tests' own client, connected once before any test's work: a client
    connecting while another cancels tasks meets distributed's handshake race
    (see ``test_connecting_while_another_client_cancels``)."""
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def on_cluster(cluster: Any, observer: Any) -> Iterator[Any]:
    veda.shutdown()
    veda.init(cluster=cluster.scheduler_address)
    yield cluster
    veda.shutdown()


def worker_pids(observer: Any) -> set[int]:
    return set(observer.run(os.getpid).values())


def wait_until_idle(observer: Any) -> None:
    """Waits (10 s at most) until no worker is processing a task."""
    deadline = time.monotonic() + 10
    while any(observer.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(observer.processing().values())


def slow_pid(x: int) -> int:
    time.sleep(0.01)
    return os.getpid()


def boom(x: int) -> int:
    if x == 37:
        raise KeyError(f"no key {x}")
    return x


def dask_figures() -> dict[str, Any]:
    """The telemetry's ``dask`` section (zeros before the first connection)."""
    zeros = {"spawned": 0, "completed": 0, "failed": 0, "cancelled": 0, "live": 0}
    empty = {"tasks": zeros, "retried": 0, "bytes_sent": 0, "bytes_received": 0, "workers": 0}
    return veda.telemetry.snapshot().executors.get("dask", empty)


# -- results -------------------------------------------------------------------


def test_map_runs_on_the_workers_in_input_order(on_cluster: Any, observer: Any) -> None:
    items = list(range(2000))
    out = veda.par_iter(items, executor="dask").map(lambda x: x * 3).collect()
    assert out == [x * 3 for x in items]
    pids = set(veda.par_iter(range(60), executor="dask").map(slow_pid).collect())
    assert pids <= worker_pids(observer)
    assert os.getpid() not in pids


def test_fused_stages_and_reducers(on_cluster: Any) -> None:
    def it() -> Any:
        return veda.par_iter(range(1, 501), executor="dask")

    assert it().map(lambda x: x * 2).filter(lambda x: x % 3 == 0).sum() == sum(
        x * 2 for x in range(1, 501) if x * 2 % 3 == 0
    )
    assert it().flat_map(lambda x: [x, -x]).count() == 1000
    assert it().max(key=lambda x: -x) == 1
    assert it().reduce(lambda a, b: a + b) == sum(range(1, 501))
    assert it().any(lambda x: x == 400) is True
    assert veda.par_iter([], executor="dask").map(abs).collect() == []
    assert it().map(str).take(3).collect() == ["1", "2", "3"]


def test_plan_crosses_the_network_once_not_per_chunk(on_cluster: Any) -> None:
    ballast = os.urandom(1 << 20)  # 1 MiB captured by the function

    def tag(x: int) -> int:
        return x + len(ballast)

    before = dask_figures()
    out = veda.par_iter(range(400), executor="dask", chunk_size=10).map(tag).collect()
    after = dask_figures()
    assert out == [x + (1 << 20) for x in range(400)]
    chunks = after["tasks"]["spawned"] - before["tasks"]["spawned"]
    assert chunks == 40
    sent = after["bytes_sent"] - before["bytes_sent"]
    # Once per pipeline (scattered to every worker), not 40 times.
    assert (1 << 20) <= sent < 2 * (1 << 20)
    assert after["workers"] == 2


# -- failures --------------------------------------------------------------------


def test_remote_error_keeps_type_message_and_worker_traceback(on_cluster: Any) -> None:
    with pytest.raises(KeyError, match="no key 37") as info:
        veda.par_iter(range(100), executor="dask").map(boom).collect()
    error = info.value
    assert error.veda_worker_address in {  # type: ignore[attr-defined]
        w for w in on_cluster.scheduler_info["workers"]
    }
    assert "in boom" in error.veda_remote_traceback  # type: ignore[attr-defined]
    assert "vedart/_dask.py" not in error.veda_remote_traceback  # type: ignore[attr-defined]
    assert any("Dask worker" in note for note in error.__notes__)
    # The cluster is fine afterwards.
    assert veda.par_iter(range(10), executor="dask").map(abs).sum() == 45


def test_unpicklable_function_and_item_are_type_errors(on_cluster: Any) -> None:
    lock = threading.Lock()
    with pytest.raises(TypeError, match=r"map\(.*\) cannot be sent"):
        veda.par_iter(range(10), executor="dask").map(lambda x: (lock, x)[1]).collect()
    with pytest.raises(TypeError, match="item 3 of the input"):
        veda.par_iter([1, 2, 3, lock], executor="dask", chunk_size=10).map(id).collect()
    with pytest.raises(TypeError, match="cannot be sent"):
        veda.spawn(lambda: lock, executor="dask")


def test_timeout_cancels_the_outstanding_tasks(on_cluster: Any) -> None:
    before = dask_figures()["tasks"]["cancelled"]
    started = time.monotonic()
    with pytest.raises(veda.TimeoutError):
        veda.par_iter(range(200), executor="dask", chunk_size=1).map(
            lambda x: time.sleep(0.05)
        ).collect(timeout=0.5)
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while dask_figures()["tasks"]["cancelled"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dask_figures()["tasks"]["cancelled"] > before
    assert veda.par_iter(range(5), executor="dask").map(abs).collect() == list(range(5))


def test_ctrl_c_mid_map_cancels_and_the_cluster_recovers(
    on_cluster: Any, observer: Any
) -> None:
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            veda.par_iter(range(400), executor="dask", chunk_size=1).map(
                lambda x: time.sleep(0.05)
            ).collect()
    finally:
        timer.cancel()
    assert time.monotonic() - started < 10
    wait_until_idle(observer)
    assert veda.par_iter(range(5), executor="dask").map(abs).sum() == 10


def test_streaming_reads_a_long_generator_lazily(on_cluster: Any) -> None:
    pulled = 0

    def numbers() -> Iterator[int]:
        nonlocal pulled
        for i in range(10_000_000):
            pulled += 1
            yield i

    seen = 0
    for value in veda.par_iter(numbers(), executor="dask").map(lambda x: x + 1):
        seen += 1
        assert value == seen
        if seen == 5000:
            break
    # Bounded look-ahead: far from the ten million items.
    assert pulled < 1_000_000


@pytest.mark.timeout(60)
def test_pipelines_and_spawns_from_many_threads_at_once(on_cluster: Any) -> None:
    def client_thread(seed: int) -> None:
        for round_ in range(3):
            base = seed * 1000 + round_
            pipeline = veda.par_iter(range(200), executor="dask")
            out = pipeline.map(lambda x, base=base: x + base).collect()
            assert out == [x + base for x in range(200)]
            assert veda.spawn(pow, seed, 2, executor="dask").result(timeout=30) == seed**2

    run_in_threads(client_thread, 6, timeout=50)


def test_unordered_gives_every_result(on_cluster: Any) -> None:
    out = veda.par_iter(range(300), executor="dask").map(lambda x: x * x).unordered().collect()
    assert sorted(out) == [x * x for x in range(300)]


# -- spawn, scope, asyncio -------------------------------------------------------------


def test_spawn_and_scope_spawn_run_on_the_cluster(on_cluster: Any, observer: Any) -> None:
    pids = worker_pids(observer)
    assert veda.spawn(os.getpid, executor="dask").result(timeout=30) in pids
    assert veda.spawn(pow, 2, 10, executor="dask").result(timeout=30) == 1024
    with veda.scope() as s:
        a = s.spawn(slow_pid, 1, executor="dask")
        b = s.spawn(divmod, 7, 2, executor="dask")
        c = s.spawn(os.getpid)  # a thread child beside them
    assert a.result() in pids and b.result() == (3, 1) and c.result() == os.getpid()
    with pytest.raises(ValueError, match="executor must be one of"):
        veda.spawn(abs, 1, executor="processes")


def test_scope_failure_cancels_cluster_children(on_cluster: Any) -> None:
    started = time.monotonic()
    with pytest.raises(KeyError):
        with veda.scope() as s:
            slow = s.spawn(time.sleep, 2, executor="dask")
            s.spawn(boom, 37, executor="dask")
    assert time.monotonic() - started < 1.9  # did not wait for the sleeper
    assert slow.cancelled() or isinstance(slow.exception(), veda.CancelledError)
    time.sleep(2)  # let the worker finish the sleep it could not interrupt


def test_async_terminals_do_not_block_the_loop(on_cluster: Any) -> None:
    async def main() -> tuple[list[int], int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        out = await veda.par_iter(range(40), executor="dask", chunk_size=2).map(
            lambda x: (time.sleep(0.02), x)[1]
        ).collect()
        value = await veda.spawn(pow, 3, 4, executor="dask")
        task.cancel()
        return out, value, ticks

    out, value, ticks = asyncio.run(main())
    assert out == list(range(40)) and value == 81
    assert ticks >= 10  # the loop ran while the cluster worked


def test_cancelling_the_awaiting_task_cancels_the_cluster_tasks(
    on_cluster: Any, observer: Any
) -> None:
    before = dask_figures()["tasks"]["cancelled"]

    async def main() -> None:
        work = asyncio.ensure_future(
            veda.par_iter(range(400), executor="dask", chunk_size=1)
            .map(lambda x: time.sleep(0.05))
            .collect()
        )
        await asyncio.sleep(0.5)
        work.cancel()
        with pytest.raises(asyncio.CancelledError):
            await work

    asyncio.run(main())
    wait_until_idle(observer)
    assert dask_figures()["tasks"]["cancelled"] > before


def test_veda_executor_on_the_cluster(on_cluster: Any, observer: Any) -> None:
    pids = worker_pids(observer)
    with veda.VedaExecutor("dask") as pool:
        assert pool.submit(os.getpid).result(timeout=30) in pids
        assert list(pool.map(pow, [2, 3, 4], [5, 2, 1])) == [32, 9, 4]
        results = pool.map(boom, range(40))
        assert [next(results) for _ in range(37)] == list(range(37))
        with pytest.raises(KeyError, match="no key 37"):
            next(results)
        with pytest.raises(KeyError):
            pool.submit(boom, 37).result(timeout=30)
    with pytest.raises(ValueError, match="max_workers"):
        veda.VedaExecutor("dask", max_workers=2)


# -- modes, telemetry, explain ------------------------------------------------------------


def test_deterministic_mode_gives_the_same_results_and_seeds(on_cluster: Any) -> None:
    def draw() -> list[float]:
        with veda.deterministic(seed=1234):
            return (
                veda.par_iter(range(50), executor="dask", chunk_size=5)
                .map(lambda x: random.random())
                .collect()
            )

    first, second = draw(), draw()
    assert first == second
    assert len(set(first)) == 50  # per-task seeds, not one seed for all


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def test_auto_sends_heavy_cpu_work_to_a_configured_cluster(on_cluster: Any) -> None:
    pipeline = veda.par_iter([22] * 500).map(fib)
    assert pipeline.collect() == [fib(22)] * 500
    explanation = pipeline.explain()
    if explanation.executor == "thread" and "cannot run it in parallel" not in (
        explanation.reason
    ):
        pytest.skip(f"the probes did not look CPU-bound on this loaded machine: {explanation}")
    assert explanation.executor == "dask", explanation.reason
    assert "a cluster is configured" in explanation.reason
    # Too little work for the round trips: it stays here, and explain() says so.
    small = veda.par_iter([15] * 20).map(fib)
    small.collect()
    assert small.explain().executor != "dask"


def test_progress_bar_counts_cluster_results(on_cluster: Any, capsys: Any) -> None:
    out = veda.par_iter(range(100), executor="dask").map(abs).collect(progress="on dask")
    assert out == list(range(100))
    assert "on dask" in capsys.readouterr().err


def test_telemetry_and_explain_name_the_cluster(on_cluster: Any) -> None:
    pipeline = veda.par_iter(range(10), executor="dask").map(abs)
    assert pipeline.sum() == 45
    explanation = pipeline.explain()
    assert explanation.executor == "dask"
    assert on_cluster.scheduler_address in explanation.reason
    figures = dask_figures()
    assert figures["tasks"]["completed"] > 0 and figures["workers"] == 2
    assert figures["bytes_received"] > 0


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["nonsense", "tcp://", "tcp://host", "tcp://host:0", "tcp://host:99999", "http://h:1", 8786],
)
def test_bad_cluster_address_is_a_config_error(address: Any) -> None:
    with pytest.raises(veda.ConfigError, match="cluster"):
        veda.Config(cluster=address)


def test_cluster_settings_and_their_checks() -> None:
    assert veda.Config(cluster="tcp://10.0.0.1:8786").cluster == "tcp://10.0.0.1:8786"
    assert veda.Config.builder().cluster("local").build().cluster == "local"
    assert veda.Config(cluster="tls://[::1]:8786").cluster == "tls://[::1]:8786"
    with pytest.raises(veda.ConfigError, match="cluster_security"):
        veda.Config(cluster_security="certs.pem")
    with pytest.raises(veda.ConfigError, match="cluster_connect_timeout"):
        veda.Config(cluster_connect_timeout=0)
    with pytest.raises(veda.ConfigError, match="not a field"):
        veda.init(clustr="local")


def test_dask_without_a_cluster_is_a_config_error(runtime_config: Any) -> None:
    runtime_config(veda.Config())
    with pytest.raises(veda.ConfigError, match="cluster="):
        veda.par_iter(range(3), executor="dask").map(abs).collect()
    with pytest.raises(veda.ConfigError, match="cluster="):
        veda.spawn(abs, 1, executor="dask")
    # auto never goes to a cluster that is not configured
    assert veda.par_iter(range(3)).map(abs).explain().executor != "dask"


def test_unreachable_scheduler_fails_within_the_timeout(runtime_config: Any) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    runtime_config(veda.Config(cluster=address, cluster_connect_timeout=1.0))
    started = time.monotonic()
    with pytest.raises(veda.ExecutorError, match=address):
        veda.par_iter(range(3), executor="dask").map(abs).collect()
    assert time.monotonic() - started < 15


def set_allowed_failures(count: int, dask_scheduler: Any = None) -> None:
    dask_scheduler.allowed_failures = count


def test_a_scheduler_that_reruns_tasks_is_warned_about(observer: Any) -> None:
    from vedart import _dask

    observer.run_on_scheduler(set_allowed_failures, 3)
    try:
        with pytest.warns(RuntimeWarning, match="ALLOWED_FAILURES=0"):
            _dask._check_rescheduling(observer, "tcp://rerunning.example:8786")
    finally:
        observer.run_on_scheduler(set_allowed_failures, 0)


def test_connecting_while_another_client_cancels(cluster: Any, observer: Any) -> None:
    """distributed's client handshake fails (``AssertionError``) when another
    client's cancel request reaches it in the same batch as the scheduler's
    greeting; vedart's connection tries again instead of failing."""
    from vedart import _dask

    stop = threading.Event()

    def submit_and_cancel() -> None:
        while not stop.is_set():
            observer.cancel([observer.submit(time.sleep, 1, pure=False)])

    churn = threading.Thread(target=submit_and_cancel)
    churn.start()
    try:
        for _ in range(20):
            _dask._close_quietly(_dask._connect(cluster.scheduler_address, None, 10))
    finally:
        stop.set()
        churn.join()
