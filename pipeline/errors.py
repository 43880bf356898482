"""Exceptions that mean bad input or a refused action: shown as one line, exit status 1."""
from __future__ import annotations

from pipeline.cache import LockError
from pipeline.config import ConfigError
from pipeline.stage import StageError
from retrieval.dataset import DatasetError

# FileNotFoundError and ValueError are how the libraries report a bad file or value by name.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, StageError, DatasetError, LockError, FileNotFoundError, ValueError)
