"""DSP: the feed-forward compressor, its parameterisation, pre-emphasis and loss,
the Newton solver and its derivative kernel, the peak-reduction chain and the knob map."""
