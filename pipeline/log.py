"""The package logger: one `skylink` logger, tqdm-friendly output."""
from __future__ import annotations

import logging

LOGGER_NAME = "skylink"
log = logging.getLogger(LOGGER_NAME)


class _TqdmHandler(logging.StreamHandler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record))
        except Exception:  # pragma: no cover - logging must never crash the run
            super().emit(record)


def setup_logging(verbose: bool = False) -> None:
    if any(isinstance(h, _TqdmHandler) for h in log.handlers):
        return
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s] %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
