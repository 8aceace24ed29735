"""Neural tests run on one intra-op thread.

Tiny models on short blocks gain nothing from threads, and on a busy machine every
small op would otherwise wait for the thread pool (milliseconds per op)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
