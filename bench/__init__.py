"""Tools beside the system: the data generator and the benchmarks."""
