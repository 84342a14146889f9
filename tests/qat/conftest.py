"""The QAT tests train small models: one torch thread (torch's own pool fights pytest and the
engine's threads for a 2-core CI machine, and tiny layers run faster on one thread anyway)."""
import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
