"""Many runs: the job list of a matrix or sweep, built once (``jobs``), what is checked
before any of them starts (``preflight``), and where they run (``executors``: local
processes or a Ray cluster)."""
