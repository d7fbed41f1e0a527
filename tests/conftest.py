"""Suite-wide test settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # The tests use small inputs: intra-op threading buys nothing, and with the 2 cores shared
    # by other processes (the DDP test, a busy CI box) OpenMP barriers made small DenseNet
    # forwards ~50x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
