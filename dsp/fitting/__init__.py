"""Fitting: the Newton solver, per-setting fits of each model class, the joint fit over
the knobs, and the collapse check."""
