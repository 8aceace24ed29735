"""The DSP models: the five-parameter compressor, the gray-box blocks around it, their
parameterisations, pre-emphasis and streaming renderers. Tensors in, tensors out."""
