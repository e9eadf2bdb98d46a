"""Measurement outside training: step throughput (``speed``) and the machine's GEMM
yardstick (``roofline``)."""
