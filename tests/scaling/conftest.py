"""Shared setup for the scaling-engine tests.

The fits run many tiny L-BFGS-B problems (4-7 parameters). With a multi-threaded OpenBLAS each of scipy's BLAS
calls wakes the BLAS worker threads; on a busy 2-core machine that costs milliseconds per call and makes one
fit take seconds instead of a tenth of a second. Results do not depend on the thread count, so every test in this
folder runs with one BLAS thread (what bootstrap workers use anyway).
"""

from __future__ import annotations

import pytest
import scipy.optimize  # noqa: F401  (loads scipy's OpenBLAS so threadpoolctl can see and limit it)
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield
