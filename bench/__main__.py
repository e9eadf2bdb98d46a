"""``python -m bench``. The signal handlers go in before anything heavy is imported, so a
Ctrl-C even during the imports ends in one line, not a traceback."""
import sys

from bench import interrupts


def console() -> int:
    interrupts.install()
    try:
        from bench.cli import main
    except KeyboardInterrupt:
        print("interrupted while starting: nothing was written", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(console())
