"""Tools around training: the regression check, cost and overhead benchmarks, the bare loop."""
