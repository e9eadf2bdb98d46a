"""The one exception type for user errors: the CLI turns it into one line and exit status 2."""


class BenchError(Exception):
    """A mistake the user can fix (a bad name, size, path or missing corpus).

    The message is the whole story: what is wrong and how to fix it. Anything that is not
    a BenchError is a bug and keeps its traceback.
    """


def unknown_name(kind: str, name: str, valid: list[str]) -> BenchError:
    """The error for a name not among ``valid``: lists them and suggests the closest."""
    import difflib

    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return BenchError(f"unknown {kind} {name!r}{hint}; choose one of: {', '.join(valid)}")
