"""``veda.telemetry.serve_metrics``: a Prometheus ``/metrics`` endpoint built on
``prometheus_client``, scraped over real HTTP."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

import vedart as veda
from conftest import run_python
from vedart import telemetry

parser = pytest.importorskip("prometheus_client.parser")


def scrape(port: int) -> dict:
    """The families of one scrape of ``/metrics``, by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode("utf-8")
    return {family.name: family for family in parser.text_string_to_metric_families(text)}


def thread_tasks(families: dict, name: str, **labels: str) -> float:
    return next(
        s.value
        for s in families[name].samples
        if s.labels.get("executor") == "thread"
        and all(s.labels.get(k) == v for k, v in labels.items())
        and s.name.endswith("_total")
    )


def refused(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).close()
    except urllib.error.URLError as error:
        return isinstance(error.reason, ConnectionRefusedError)
    return False


@pytest.fixture(autouse=True)
def _no_endpoint_left():
    yield
    telemetry.stop_metrics()


@pytest.mark.timeout(60)
def test_a_scrape_while_maps_run_shows_task_counters_moving():
    port = telemetry.serve_metrics(port=0)
    assert isinstance(port, int) and port > 0
    stop = threading.Event()
    rounds = []

    def maps() -> None:
        while not stop.is_set():
            pipeline = veda.par_iter(range(200), chunk_size=10, executor="thread")
            pipeline.map(lambda x: x + 1).collect()
            rounds.append(1)

    worker = threading.Thread(target=maps)
    worker.start()
    try:
        first = scrape(port)
        seen = len(rounds)
        deadline = time.monotonic() + 30
        while len(rounds) < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        second = scrape(port)
    finally:
        stop.set()
        worker.join(30)
    assert len(rounds) >= seen + 2, "maps made no progress"
    before = thread_tasks(first, "vedart_tasks_spawned")
    after = thread_tasks(second, "vedart_tasks_spawned")
    # Two whole maps of 20 chunks each ran between the scrapes.
    assert after >= before + 40
    done_before = thread_tasks(first, "vedart_tasks_finished", outcome="completed")
    done_after = thread_tasks(second, "vedart_tasks_finished", outcome="completed")
    assert done_after >= done_before + 40
    assert second["vedart_tasks_spawned"].type == "counter"
    assert second["vedart_task_run_time_seconds"].type == "histogram"
    assert second["vedart_workers"].type == "gauge"
    count = next(
        s.value
        for s in second["vedart_task_run_time_seconds"].samples
        if s.name.endswith("_count") and s.labels["executor"] == "thread"
    )
    assert count >= done_after - 1  # a chunk may be between its two counts


@pytest.mark.timeout(30)
def test_serve_metrics_on_a_busy_port_is_a_clear_error_and_the_first_keeps_serving():
    port = telemetry.serve_metrics()
    with pytest.raises(veda.MetricsServerError, match=f"127.0.0.1:{port}") as caught:
        telemetry.serve_metrics(port=port)
    error = caught.value
    assert isinstance(error, veda.VedaError) and isinstance(error, OSError)
    assert error.address == f"127.0.0.1:{port}"
    assert isinstance(error.__cause__, OSError)
    assert "in use" in str(error)
    assert "vedart_tasks_spawned" in scrape(port)


@pytest.mark.timeout(30)
def test_a_port_held_by_another_program_is_a_clear_error():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(veda.MetricsServerError, match=f"127.0.0.1:{port}"):
            telemetry.serve_metrics(port, addr="127.0.0.1")


@pytest.mark.parametrize("port", [-1, 65536, "9090", 1.5, True])
def test_a_bad_port_names_the_argument(port):
    with pytest.raises(veda.ConfigError, match="port"):
        telemetry.serve_metrics(port)


@pytest.mark.timeout(30)
def test_the_endpoint_stops_at_shutdown_and_at_stop_metrics():
    port = telemetry.serve_metrics()
    scrape(port)
    veda.shutdown()
    assert refused(port)
    port = telemetry.serve_metrics()
    other = telemetry.serve_metrics()
    telemetry.stop_metrics(port)
    assert refused(port)
    scrape(other)
    telemetry.stop_metrics()
    assert refused(other)
    telemetry.stop_metrics()  # idempotent


def test_to_prometheus_is_the_endpoints_exposition():
    port = telemetry.serve_metrics()
    served = set(scrape(port))
    exposition = telemetry.snapshot().to_prometheus()
    local = {f.name for f in parser.text_string_to_metric_families(exposition)}
    assert served == local and "vedart_task_queue_wait_seconds" in local


def test_a_program_serving_metrics_exits_without_stopping_it():
    result = run_python(
        """
        import urllib.request, vedart as veda
        port = veda.telemetry.serve_metrics()
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        veda.par_iter(range(10)).map(abs).collect()
        print("ok")
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_without_prometheus_client_the_error_names_the_extra():
    result = run_python(
        """
        import sys
        sys.modules["prometheus_client"] = None  # as if it were not installed
        import vedart as veda
        for call in (veda.telemetry.serve_metrics, veda.telemetry.snapshot().to_prometheus):
            try:
                call()
            except veda.ConfigError as error:
                print(type(error).__name__, error)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all("ConfigError" in line and "vedart[metrics]" in line for line in lines)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_keep_the_port_of_a_stopped_endpoint():
    # Without closing its copy of the listening socket, a child that outlives
    # the endpoint would keep the port bound: scrapes would queue unanswered.
    result = run_python(
        """
        import os, socket, sys, time, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads
        import vedart as veda
        port = veda.telemetry.serve_metrics()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.write(write, b"x")
            time.sleep(30)
            os._exit(0)
        os.close(write)
        os.read(read, 1)  # the child has forked and run its fork hooks
        veda.telemetry.stop_metrics()
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", port))
            print("free")
        except OSError as error:
            print("held", error)
        finally:
            probe.close()
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "free"
