"""The process executor's reliability rules: one report per worker death,
chunks that run at most once, retries, payloads of any size, per-call
timeouts."""

from __future__ import annotations

import os
import sys
import time

import pytest

import vedart as veda
from vedart import _process

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the process pool needs Linux")


def crash_first(x):
    """Chunk 0 kills its worker after the chunks behind it were queued there."""
    if x == 0:
        time.sleep(0.3)
        os._exit(7)
    return x


# -- one death, one report ----------------------------------------------------------


@pytest.mark.timeout(60)
def test_one_worker_death_is_reported_once_with_the_chunks_it_took_down(runtime_config):
    runtime_config(veda.Config(num_processes=1))
    with pytest.raises(veda.WorkerCrashedError) as info:
        veda.par_iter(range(8), chunk_size=1, executor="process").map(crash_first).collect()
    error = info.value
    assert error.exit_code == 7
    assert 0 in error.chunks
    assert "chunk" in str(error)
    others = getattr(error, "veda_other_errors", [])
    crashes = [e for e in others if isinstance(e, veda.WorkerCrashedError)]
    assert crashes == [], f"the death was reported {1 + len(crashes)} times"
    # The report survives pickling, chunks included.
    import pickle

    again = pickle.loads(pickle.dumps(error))
    assert again.chunks == error.chunks and again.pid == error.pid
    assert veda.par_iter(range(4), executor="process").map(abs).collect() == [0, 1, 2, 3]
