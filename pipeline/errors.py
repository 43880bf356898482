"""Exceptions that mean bad input or a refused action: shown as one line, exit status 1.

Everything else that escapes a command is a bug in SkyLink and keeps its traceback (pipeline/cli.py).
"""
from __future__ import annotations

from pipeline.cache import LockError
from pipeline.config import ConfigError
from pipeline.stage import StageError
from reconstruction.sfm import ReconstructionError
from retrieval.dataset import DatasetError

# OSError: a missing, unreadable or unwritable file or folder, named by the library that met it.
# ValueError: how the libraries report a bad value or file by name. ImportError: an optional extra
# (timm, ray) that the chosen setting needs and this environment lacks. FloatingPointError: training
# diverged (retrieval.train.NonFiniteLossError), which a setting such as the learning rate causes.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, StageError, DatasetError, LockError, ReconstructionError,
    OSError, ValueError, ImportError, FloatingPointError,
)


def one_line(e: BaseException) -> str:
    """The message of `e` on one line (libraries sometimes add detail lines below the first)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    return text + (" (more with --debug)" if len(lines) > 1 else "")
