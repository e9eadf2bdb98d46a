"""``python -m bench``. The signal handlers go in before anything heavy is imported, so a
signal even during the imports ends in one line and exit 130, not a traceback. Only one in
the interpreter's own start, before this module runs (a few tens of milliseconds, longer on
a busy machine), meets Python's defaults: SIGTERM and SIGHUP end the process at once (a
parent sees -15 or -1; a shell, 143 or 129), SIGINT with a traceback; nothing is written."""
import signal
import sys

from bench import interrupts
from bench.exits import EXIT_INTERRUPTED


def console() -> int:
    interrupts.install()
    try:
        from bench.cli import main

        interrupts.check()  # a signal during the imports stops here, once they are done
    except KeyboardInterrupt as exc:
        by = f" by {exc.args[0]}" if exc.args else ""
        print(f"interrupted{by} while starting: nothing was written", file=sys.stderr)
        return _ended(EXIT_INTERRUPTED)
    return _ended(main())


def _ended(code: int) -> int:
    """``code``, our signals ignored from here to the exit: the command has ended and a signal
    has nothing left to stop, but Python's finalization puts the default handlers back in
    place of ours (not of an ignore), and a signal then would kill the process (-2, -15)
    after it said otherwise."""
    for sig in interrupts.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    return code


if __name__ == "__main__":
    sys.exit(console())
