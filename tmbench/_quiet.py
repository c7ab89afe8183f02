"""Silence chatty third-party code that writes to the process's stderr from C (faiss k-means
warnings) or from progress bars we cannot switch off (GGUF de-quantisation)."""

from __future__ import annotations

import contextlib
import io
import os
import sys


@contextlib.contextmanager
def quiet_stderr():
    """Send fd 2 (and sys.stderr) to /dev/null for the duration; restore even on error."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
