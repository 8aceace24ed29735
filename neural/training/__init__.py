"""Training of the neural models: losses (:mod:`neural.training.losses`) and the loop
(:mod:`neural.training.loop`: Adam on random segments, validation, early stopping,
checkpoints, resume)."""
