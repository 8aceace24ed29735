"""Audio: file I/O and validation, SignalTrain layout, framing, program material,
the stand-in optical leveller and metrics."""
