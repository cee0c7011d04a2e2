"""One updating progress line per stage, for a person at a terminal: items done/total, rate, ETA.

Used only when the edge that started the run says its console is a terminal (RunSettings.progress_bar,
set by the CLI from `stderr.isatty()`); CI, pipes, Dagster's UI and Celery workers keep the plain log
line every few seconds (pipeline/metered.py ProgressLog), which reads well in a file. Drawn with tqdm
(already installed with sentence-transformers and transformers). While a bar is open, log lines
written to the console go through tqdm.write, so they print above the bar instead of breaking it.
"""

from __future__ import annotations

import threading
from typing import TextIO


class ProgressBar:
    """A tqdm bar on `stream`, opened at the first report (a stage that reports nothing draws nothing),
    left on screen at its last state by close(). Reports may come from a worker thread (Kura's
    ledger poller): a lock keeps them whole."""

    def __init__(self, stage: str, stream: TextIO, mininterval_s: float = 0.2):
        self.stage, self.stream, self.mininterval_s = stage, stream, mininterval_s
        self._lock = threading.Lock()
        self._bar = None
        self._redirect = None

    def update(self, done: int, total: int) -> None:
        with self._lock:
            if self._bar is None:
                self._open(total)
            bar = self._bar
            if total != bar.total:  # a streamed stage learns its total as batches come
                bar.total = total
            if done >= bar.n:
                bar.update(done - bar.n)  # redrawn at most every mininterval_s
            else:
                bar.n = done
                bar.refresh()

    def _open(self, total: int) -> None:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._bar = tqdm(total=total, desc=self.stage, unit=" items", file=self.stream, leave=True,
                         dynamic_ncols=True, mininterval=self.mininterval_s)
        self._redirect = logging_redirect_tqdm()
        self._redirect.__enter__()

    def close(self) -> None:
        """Draw the last state and end the line; put the console log handlers back."""
        with self._lock:
            bar, redirect = self._bar, self._redirect
            self._bar = self._redirect = None
            if bar is not None:
                bar.close()
            if redirect is not None:
                redirect.__exit__(None, None, None)
