"""Export a fitted compressor, a knob map or a neural model as one TorchScript file.

    python export.py fits/song/ckpt.yaml song.pt           # a one-pair fit: forward(x)
    python export.py checkpoints/standin la2a.pt            # a chain: forward(x, peak_reduction, mode)
    python export.py runs/lru_hybrid/best.pt hybrid.pt      # a neural run: forward(x, peak_reduction, mode)
    python export.py checkpoints/manifest dev.pt            # a manifest fit (per take or knob curves): forward(x, knobs)

The file runs with torch alone (nothing of this project installed):

    m = torch.jit.load("la2a.pt")
    y = m(x, 65.0, 0.0)          # x: (samples,) or (channels, samples); mode 0 compress, 1 limit
    m.reset()                    # back to silence; consecutive calls continue the stream

A device with its own knobs (a manifest fit) takes its knob values as one list in the
device's order (m.knob_names()), answered as test_comp.py answers them (the nearest fitted
setting of per-take fits, or the knob curves of a joint fit):

    y = m(x, [-20.0, 4.0])

Before the file is written it is loaded back and checked against the Python renderer
(test_comp.py's) on a test signal in odd-sized blocks; a module that differs by more
than 1e-4 is not written. Both DSP classes export (compressor=ff5 and compressor=graybox,
a fit or a knob map); neural models: S6, LSTM, LRU and FF backbones of LA-2A models, hybrids
with their audio-rate path (shaper and filter after the gain) included.

    python export.py checkpoints/standin la2a_neutone --neutone   # Neutone FX model folder

--neutone needs neutone-sdk in its own environment (docs/NEUTONE.md).
"""
from __future__ import annotations

import argparse
import sys

from common.errors import ArgumentParser, run_main


def parse_args(argv):
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a fit (ckpt.yaml or its folder, a chain or joint fit folder, a manifest fit "
                                   "folder) or a neural .pt")
    ap.add_argument("out", help="the TorchScript file to write (e.g. model.pt)")
    ap.add_argument("--sample-rate", type=int, default=None,
                    help="rate the DSP module starts at (default: the fit's rate, 44100 for a knob map; "
                         "the module's set_sample_rate() changes it)")
    ap.add_argument("--neutone", action="store_true",
                    help="write a Neutone FX model folder at OUT instead (model.nm, metadata.json), validated "
                         "by neutone-sdk; needs the SDK's own environment (docs/NEUTONE.md)")
    return ap.parse_args(argv)


def main() -> int:
    args = parse_args(sys.argv[1:])
    from jobs.export import run_export  # after parsing: --help stays fast
    return run_export(args.source, args.out, args.sample_rate, args.neutone)


def cli() -> None:
    """The console command (``pip install -e .``): main with one-line errors."""
    run_main(main)


if __name__ == "__main__":
    cli()
