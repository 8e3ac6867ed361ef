"""A toy search space (small CNNs on 16x16 grey images) and two evaluators for it."""
