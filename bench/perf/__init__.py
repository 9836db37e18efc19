"""Performance benchmarks: speed and memory, rerun on any machine."""
