"""Running attacks over a dataset in fixed-size batches, with per-batch timing."""
