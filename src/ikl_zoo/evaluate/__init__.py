"""Clean and AutoAttack robust accuracy, RobustBench-exact, chunked, resumable and sharded."""
