"""A training run's progress on one line, and where such output can be shown.

    in_jupyter()     True inside a running Jupyter kernel
    interactive()    a terminal or a notebook: somewhere a person watches, not a log or a test
    Progress         step, loss, steps per second and time left, rewritten in place
"""
import sys
import time


def in_jupyter():
    """True inside a running Jupyter kernel (not merely after something imported ipykernel). It
    looks only at modules already loaded, so a script never imports IPython; a terminal IPython
    session is not a kernel."""
    shell = sys.modules.get("ipykernel.zmqshell")
    return shell is not None and shell.ZMQInteractiveShell.initialized()


class Progress:
    """One line, rewritten in place: step, loss, steps per second, time left. It appears only
    once a run has taken `after` seconds, so short fits stay silent."""

    def __init__(self, num_steps, after=2.0):
        self.num_steps, self.after = num_steps, after
        self.stream = sys.stdout if in_jupyter() else sys.stderr    # a notebook paints stderr red
        self.start = self.last = time.perf_counter()
        self.shown = False

    def update(self, step, value):
        now = time.perf_counter()
        if now - self.start < self.after or (now - self.last < 0.25 and step + 1 < self.num_steps):
            return
        self.last, self.shown = now, True
        rate = (step + 1) / (now - self.start)
        self.stream.write(f"\rstep {step + 1}/{self.num_steps}  loss {value:.4f}  {rate:.0f} steps/s  "
                          f"{(self.num_steps - step - 1) / rate:.0f} s left ")
        self.stream.flush()

    def close(self):
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def interactive():
    """Progress goes to a terminal or a Jupyter notebook, never into a log or a test's output."""
    return sys.stderr.isatty() or in_jupyter()
