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
