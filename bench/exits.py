"""The exit status of every command, and what each says of a run (its record's status)."""

EXIT_OK = 0  # completed
EXIT_FAILED = 1  # a bug: the traceback is printed
EXIT_USER_ERROR = 2  # bad input, found before anything was written
EXIT_DIVERGED = 3
EXIT_ABORTED = 4  # the machine stopped it: disk full, I/O error, out of memory
EXIT_INTERRUPTED = 130  # Ctrl-C, SIGTERM or SIGHUP

# How `bench matrix` and `bench sweep` name a child run's exit status.
STATUS_BY_EXIT = {EXIT_OK: "completed", EXIT_USER_ERROR: "bad input", EXIT_DIVERGED: "diverged",
                  EXIT_ABORTED: "aborted", EXIT_INTERRUPTED: "interrupted"}
