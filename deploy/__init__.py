"""Deployment: the fitted and trained models as streaming TorchScript modules, and the export job.

A top layer: it imports dsp and neural; nothing below imports it.
"""
