import numpy as np

from tmbench.cache import load_array, save_array


def test_roundtrip_and_corruption_detected(tmp_path):
    p = tmp_path / "a.arr"
    a = np.arange(10, dtype=np.float32)
    save_array(p, a)
    assert np.array_equal(load_array(p), a)
    raw = bytearray(p.read_bytes())
    raw[-40] ^= 0xFF  # flip a data byte
    p.write_bytes(bytes(raw))
    msgs = []
    assert load_array(p, warn=msgs.append) is None
    assert msgs and "a.arr" in msgs[0] and not p.exists()


def test_truncated_file_is_refused(tmp_path):
    p = tmp_path / "b.arr"
    save_array(p, np.ones((3, 4)))
    p.write_bytes(p.read_bytes()[:50])
    assert load_array(p, warn=lambda m: None) is None
    assert load_array(tmp_path / "missing.arr") is None


def test_checkpoint_corruption_and_pickles_are_refused(tmp_path):
    import pytest
    import torch

    from tmbench.backbones.gpt import GPT, GPTConfig
    from tmbench.checkpoint import load_tensors
    from tmbench.models.native_ar import NativeARModel
    from tmbench.models.shipped import load_model_dir, save_model_dir

    torch.manual_seed(0)
    m = NativeARModel(GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16)), 50)
    save_model_dir(m, tmp_path / "m")
    load_model_dir(tmp_path / "m")  # intact: loads
    w = tmp_path / "m" / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-5] ^= 0xFF
    w.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="is corrupt: its sha256 differs"):
        load_model_dir(tmp_path / "m")
    w.write_bytes(bytes(raw[:100]))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_tensors(w)
    torch.save({"x": torch.ones(2)}, tmp_path / "w.bin")
    with pytest.raises(ValueError, match="refusing to load .*pickle"):
        load_tensors(tmp_path / "w.bin")
    assert torch.equal(load_tensors(tmp_path / "w.bin", allow_pickle=True)["x"], torch.ones(2))
