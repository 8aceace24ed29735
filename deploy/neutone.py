"""The exported compressor as a Neutone FX model (``neutone-sdk``), with PR and mode as its knobs.

Needs ``neutone_sdk`` importable, which the project's own environment cannot give
(the SDK pins ``numpy<2.3`` and imports torchaudio, whose wheels are built for other
torch versions); ``docs/NEUTONE.md`` describes the separate environment it runs in.

The wrapper holds the same streaming module as the TorchScript export
(:mod:`deploy.compressor`, :mod:`deploy.neural`); the SDK scripts it, saves
``model.nm`` and ``metadata.json`` and runs its own checks (metadata, reload, the
plug-in's methods, speed, offline mode) in :func:`neutone_sdk.utils.save_neutone_model`.

Knobs (Neutone passes 0..1 per buffer): ``peak_reduction`` 0..1 -> PR 0..100;
``mode`` below 0.5 compress, from 0.5 limit. A one-pair fit has no knobs (it goes in as a
knob map of one level, whose parameters are the same at every setting).
"""
# no "from __future__ import annotations": TorchScript reads the annotations as types
from typing import Dict, List

import torch
from torch import Tensor, nn

from neutone_sdk import ContinuousNeutoneParameter, NeutoneParameter, WaveformToWaveformBase

__all__ = ["LevellerNeutone", "save_neutone"]


class LevellerNeutone(WaveformToWaveformBase):
    """Neutone wrapper around an exported streaming compressor (knob map, neural, or fixed fit).

    Args:
        model: a module with ``forward(x, peak_reduction, mode)``, ``reset()`` and
            ``set_sample_rate(sr)`` (:class:`deploy.compressor.KnobMapCompressor`,
            :class:`deploy.neural.NeuralCompressor`).
        name, description: shown in the plug-in.
        has_knobs: False for a one-pair fit (no Neutone parameters).
        native_rates: the rates it runs at natively, never empty (TorchScript must infer the
            list's type; the SDK resamples any other host rate): the common rates for the
            DSP (which follows the host), the training rate for a neural model.
        follows_rate: whether the host's rate is passed on to ``set_sample_rate``.
    """

    def __init__(self, model: nn.Module, name: str, description: str, has_knobs: bool, native_rates: List[int],
                 follows_rate: bool):
        # the SDK's constructor asks for the parameters and metadata: set what they read first
        self._name = name
        self._description = description
        self._has_knobs = has_knobs
        self._native_rates = native_rates
        self._follows_rate = follows_rate
        super().__init__(model)
        self.has_knobs = has_knobs
        self.follows_rate = follows_rate

    # --- metadata --------------------------------------------------------------------
    def get_model_name(self) -> str:
        return self._name

    def get_model_authors(self) -> List[str]:
        return ["optical-leveller-match"]

    def get_model_short_description(self) -> str:
        return "Optical levelling amplifier (LA-2A style) matched to recordings."

    def get_model_long_description(self) -> str:
        return self._description

    def get_technical_description(self) -> str:
        return ("Feed-forward compressor with torchcomp semantics (peak detector, hard knee, one-pole "
                "attack/release) whose parameters follow a knob map fitted per peak-reduction setting; "
                "the gray-box model adds the unit's transformer filters and tube stage around it; "
                "neural models add a learnt gain correction and, for hybrids, an audio-rate shaper and filter.")

    def get_technical_links(self) -> Dict[str, str]:
        return {}

    def get_tags(self) -> List[str]:
        return ["compressor", "leveller", "la-2a", "dynamics"]

    def get_model_version(self) -> str:
        return "1.0.0"

    def is_experimental(self) -> bool:
        return True

    def get_neutone_parameters(self) -> List[NeutoneParameter]:
        if not self._has_knobs:
            return []
        return [ContinuousNeutoneParameter("peak_reduction", "Peak reduction, 0..100", 0.5),
                ContinuousNeutoneParameter("mode", "Compress (below half) or limit (from half)", 0.0)]

    # --- audio -----------------------------------------------------------------------
    @torch.jit.export
    def is_input_mono(self) -> bool:
        return False

    @torch.jit.export
    def is_output_mono(self) -> bool:
        return False

    @torch.jit.export
    def get_native_sample_rates(self) -> List[int]:
        return self._native_rates

    @torch.jit.export
    def get_native_buffer_sizes(self) -> List[int]:
        return []

    @torch.jit.export
    def set_model_sample_rate_and_buffer_size(self, sample_rate: int, n_samples: int) -> bool:
        if self.follows_rate:
            self.model.set_sample_rate(sample_rate)
        self.model.reset()
        return True

    @torch.jit.export
    def reset_model(self) -> bool:
        self.model.reset()
        return True

    def do_forward_pass(self, x: Tensor, params: Dict[str, Tensor]) -> Tensor:
        pr = 0.0
        mode = 0.0
        if self.has_knobs:
            pr = float(params["peak_reduction"].reshape(-1)[0].item()) * 100.0
            mode = float(params["mode"].reshape(-1)[0].item())
        return self.model(x, pr, mode)


def save_neutone(module: nn.Module, out_dir, name: str, description: str, has_knobs: bool,
                 native_rates: List[int], follows_rate: bool, submission: bool = True) -> None:
    """Wrap ``module`` and save it with the SDK (which validates it) into ``out_dir``.

    ``out_dir`` receives ``model.nm`` and ``metadata.json`` (and ``samples/`` with
    ``submission``: the SDK's own audio examples rendered through the model).
    """
    from neutone_sdk.utils import save_neutone_model
    from pathlib import Path
    wrapper = LevellerNeutone(module, name, description, has_knobs, native_rates, follows_rate)
    save_neutone_model(wrapper, Path(out_dir), dump_samples=submission, submission=submission,
                       speed_benchmark=submission, test_offline_mode=True)
