"""Keep the memory a training step frees, instead of page-faulting it back in every step.

Autograd keeps every intermediate of a step alive until its backward pass ends (about 10 MB for
chapter 5's model), then frees it all. By default glibc's malloc hands memory at the top of its
heap back to the system once more than its trim threshold (128 KiB at start) is free there, and
the next step asks for it again: the kernel maps it back one 4 KiB page at a time, a minor page
fault each (chapter 8 measures about 1,700 faults and 4-7 ms of kernel time per step).

Flow() and fit call keep_freed_memory, so every training loop gets it, fit's or one a student
writes around autograd.value_and_grad.
"""
import numpy as onp


def keep_freed_memory(nbytes=2 ** 24):
    """Ask glibc's malloc to keep up to 2 * nbytes of freed memory for reuse instead of returning
    it to the system after every training step.

    How: glibc raises its mmap threshold to the size of a freed mmapped
    block and its trim threshold to twice that (mallopt(3), "dynamic mmap threshold"), so one
    nbytes array allocated and freed is enough; it is never written, so it costs no page faults.
    Harmless with other allocators; a no-op if MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ or
    MALLOC_MMAP_THRESHOLD_ is set (glibc then leaves its thresholds where they were put).
    """
    onp.empty(nbytes // 8)
