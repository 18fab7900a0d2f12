"""Interpreter settings for the long-running commands (``dispatch``, ``emulate``).

Their event loop shares the GIL with the SQLite writer thread, which takes
the GIL back after every statement. With CPython's default switch interval
(5 ms) the writer waits that long each time the loop is busy, and the work
the loop waits for (claims, settles) comes back late: a convoy. A 0.1 ms
interval hands the GIL over sooner. ``bench/dispatch.py`` measured the
dispatcher's drain rate up by about a fifth with it, and about a tenth more
with the collector's generation 0 raised and the start-up objects frozen:
each pushed document makes thousands of short-lived objects.
"""

from __future__ import annotations

import gc
import sys

SWITCH_INTERVAL = 0.0001  # seconds
GC_THRESHOLDS = (50_000, 50, 100)


def tune_for_throughput() -> None:
    """Apply the settings above to this process; call once, after the imports."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
