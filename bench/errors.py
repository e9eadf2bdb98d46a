"""The one exception type for user errors: the CLI turns it into one line and exit status 2."""


class BenchError(Exception):
    """A mistake the user can fix (a bad name, size, path or missing corpus).

    The message is the whole story: what is wrong and how to fix it. Anything that is not
    a BenchError is a bug and keeps its traceback.
    """
