"""How each framework RUNS a cell. Each backend exposes steps, never a training loop."""
