"""One run: settings to model (``factory``), the training loop (``runner``), its files
(``runfiles``, ``records``, ``checkpoints``, ``resume``), what it prints (``progress``),
measures (``metrics``) and needs before it starts (``budget``, ``memory``)."""
