"""One BLAS thread for tinyflow's small matrix products.

numpy hands every matrix product to a BLAS library (OpenBLAS in the pip wheels), which by
default starts one thread per core. tinyflow's products are small, (512, 64) @ (64, 64) in
chapter 5, and splitting them across threads costs more in hand-offs than it saves; when the
cores are also busy with anything else, a waiting BLAS thread spins on a core another process
needs. Measured on a 2-core machine with other work running, one training step of chapter 5's
model: 1.3-1.4 s with OpenBLAS's two threads against 0.13-0.15 s with one, whether the loop was
fit's or a hand-written autograd.value_and_grad (the README shows one).

So Flow() and fit call one_blas_thread(). It changes the thread count for the whole process
(the backward pass runs outside any call of ours, so a narrower scope would miss it), and only
when the user has not chosen one: with OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS
set, the user's choice stands. threadpoolctl (the small library scikit-learn uses for this) finds
the BLAS library numpy loaded and sets its thread count; to undo, call
threadpoolctl.threadpool_limits(limits=None) or set one of those variables before starting Python.
"""
import os

from threadpoolctl import threadpool_limits

USER_SETTINGS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread():
    """Limit numpy's BLAS to one thread for this process, unless the user set a thread count."""
    if not any(name in os.environ for name in USER_SETTINGS):
        threadpool_limits(limits=1, user_api="blas")
