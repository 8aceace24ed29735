"""Knob models: fitted parameters at any setting of a device (per-level maps, tables,
smooth curves and their bases)."""
