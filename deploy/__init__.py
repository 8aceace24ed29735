"""Deployment: the fitted and trained models as streaming TorchScript modules, built and checked
from a source (the export job itself is :mod:`jobs.export`).

A top layer: it imports dsp and neural; nothing below imports it.
"""
