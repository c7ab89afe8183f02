import importlib.util
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REQUIRED = ("torch", "transformers", "tokenizers", "yaml", "numpy", "nltk", "mauve", "lm_eval",
            "hypothesis", "tmbench")


def pytest_configure(config):
    """Fail once, clearly, when the test environment is not installed, instead of one import
    error per test module."""
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if missing:
        raise pytest.UsageError(
            f"tmbench's test dependencies are not installed in this Python ({', '.join(missing)} "
            "missing). Run the README's test command: scripts/install.sh && .venv/bin/python -m pytest -q")


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (small models: thread start-up costs more than it saves)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A tiny random transformers Llama folder (helpers.write_tiny_llama), one per test module."""
    from helpers import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("llama"))
