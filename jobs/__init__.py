"""Whole jobs, one module each: fit (train_comp.py), train (train_neural.py), compare
(compare.py), export (export.py), and the one "make sure the DSP fit exists" they share (ensure).

The library packages (common, audio, dsp, neural, report) never import this one.
"""
