"""``python -m bench``. The signal handlers go in before anything heavy is imported, so a
Ctrl-C even during the imports ends in one line, not a traceback."""
import os
import sys

from bench import interrupts
from bench.exits import EXIT_INTERRUPTED


def console() -> int:
    interrupts.install()
    try:
        from bench.cli import main
    except BaseException as exc:
        if interrupts.interrupt_behind(exc) is None:
            raise
        print("interrupted while starting: nothing was written", file=sys.stderr)
        return _exit_interrupted()
    code = main()
    return _exit_interrupted() if code == EXIT_INTERRUPTED else code


def _exit_interrupted() -> int:
    """Exit 130 now. An interrupt that lands inside a C extension's ``PyRun_*`` call (some
    library imports run code that way) marks the interpreter for death by SIGINT at exit,
    whatever the program did with the exception; a parent would then see a kill, not 130."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(console())
