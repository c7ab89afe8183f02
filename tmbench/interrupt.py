"""SIGTERM stops a command the way Ctrl-C does.

Batch schedulers, ``timeout``, ``docker stop`` and torchrun end a process with SIGTERM, whose
default action kills it on the spot: no message, and the run's lock file left behind. Under
:func:`sigterm_as_interrupt` (installed by ``tmbench.cli.main``) a SIGTERM raises
:class:`Terminated`, a ``KeyboardInterrupt``, in the main thread instead, so the stack unwinds
as after Ctrl-C: the run lock is released, the finished batches stay in the partial file, and
the CLI says one line (:func:`message`) and exits with 128 + 15 = 143 (130 after Ctrl-C).
Library code installs no handler: a script using ``Runner`` keeps its own.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM under :func:`sigterm_as_interrupt`."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (the previous handler is put
    back after it). A second SIGTERM, while the first unwinds, kills as usual."""
    if threading.current_thread() is not threading.main_thread():  # signal.signal needs it
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def exit_status(e: KeyboardInterrupt) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)


def message(e: KeyboardInterrupt, cmd: str | None) -> str:
    """One line: what was interrupted, by which signal, and how to go on. ``e.run`` names the
    run being generated, where the generate stage set it."""
    sig = "SIGTERM" if isinstance(e, Terminated) else "SIGINT (Ctrl-C)"
    run = getattr(e, "run", None)
    if cmd != "run" and not run:
        return f"tmbench: {cmd or 'command'} interrupted by {sig}"
    what = f"run {run}" if run else "tmbench run"
    return (f"tmbench: {what} interrupted by {sig}; its finished batches are kept, and rerunning "
            "the same command resumes it")
