"""Flow() and fit ask numpy's BLAS for one thread, unless the user chose a thread count: on a
busy 2-core machine two OpenBLAS threads made a training step ten times slower (threads.py)."""
import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json
from threadpoolctl import threadpool_info
import tinyflow as tf
before = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
tf.Flow(tf.StandardNormal(2), [tf.Reverse()])
after = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
print(json.dumps([before, after]))
"""


def blas_threads(**settings):
    env = {key: value for key, value in os.environ.items()
           if key not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", PROBE], env={**env, **settings}, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: BLAS starts one thread anyway")
def test_a_flow_limits_blas_to_one_thread():
    before, after = blas_threads()
    assert before and all(n > 1 for n in before) and after == [1] * len(before)


def test_a_thread_count_the_user_set_is_left_alone():
    before, after = blas_threads(OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    assert after == before == [2] * len(before)
