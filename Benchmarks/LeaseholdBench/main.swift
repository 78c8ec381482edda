// Replaced by the benchmark harness.
print("leasehold-bench: not written yet")
