"""When the report calls a memory task solved or remembered: the thresholds every table,
headline and plot of the report applies, whatever the task."""
from __future__ import annotations

# A run "solves" a task with a memoryless baseline when its test (or, for the update at
# which it did, validation) loss falls below this fraction of the baseline.
SOLVED_FRACTION = 0.1
# A run "remembers" in a task whose main metric is accuracy at this test accuracy or more.
REMEMBERED_ACCURACY = 0.99
