"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"), a cellbench cell plugin."""
from mingru.cell import MinGRUCell
from mingru.kernel import MinGRUKernel

__all__ = ["MinGRUCell", "MinGRUKernel"]
