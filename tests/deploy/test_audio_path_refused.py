"""Export refuses a model with an audio path (not converted yet) with a one-line user error."""
import pytest

from common.errors import UserError
from deploy.neural import neural_module


def test_model_with_an_audio_path_is_refused():
    record = {"model": {"backbone": "s6", "head": "hybrid_gain", "audio_path": {"fir_taps": 16, "poles": 4}}}
    with pytest.raises(UserError, match="m.pt: a model with an audio path .* cannot be exported yet"):
        neural_module(record, None, "m.pt")
