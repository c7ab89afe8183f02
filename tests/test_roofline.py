"""The roofline arithmetic on hand-computed cases, and the machine's peaks: measured once per
fingerprint, cached, and kept out of the fingerprint's id."""

import pytest

from tmbench import peaks
from tmbench import roofline as rl

approx = lambda x: pytest.approx(x, rel=1e-12)  # noqa: E731

# a 100M-parameter bfloat16 model: 2 bytes a weight
N, W = 1e8, 2e8


def test_decoding_faster_than_the_bandwidth_allows_is_a_share_of_2():
    """Batch 1, no cache counted, 1 ms per step, 100 GB/s: 200 MB read per step is 200 GB/s,
    twice what the machine can read: an impossible figure, share 2.0."""
    w = rl.decode_step(N, W, rows=1, context=0)
    assert (w.flops, w.bytes) == (2e8, 2e8)  # 2 x 1e8 FLOPs, 2e8 bytes of weights
    r = rl.bound(w, 1e-3, peak_flops=1e12, bandwidth=1e11)
    assert r["intensity"] == 1.0 and r["ridge"] == 10.0 and r["bound"] == "bandwidth"
    assert r["achieved_bandwidth"] == approx(2e11) and r["achieved_flops"] == approx(2e11)
    assert r["share"] == approx(2.0)


def test_the_kv_cache_and_attention_at_the_steps_context():
    """10 layers, q_dim = kv_dim = 500, 2-byte cache: 2 x 10 x 500 x 2 = 20,000 bytes per cached
    position; at context 1,000 the step reads 2e8 + 1,000 x 20,000 = 2.2e8 bytes and does
    2e8 + 4 x 10 x 500 x 1,000 = 2.2e8 FLOPs; in 2.2 ms that is exactly 100 GB/s."""
    kv = rl.kv_token_bytes(layers=10, kv_dim=500, elem_bytes=2)
    assert kv == 20_000
    w = rl.decode_step(N, W, rows=1, context=1000, layers=10, q_dim=500, kv_bytes=kv)
    assert (w.flops, w.bytes) == (2.2e8, 2.2e8)
    r = rl.bound(w, 2.2e-3, peak_flops=1e12, bandwidth=1e11)
    assert r["bound"] == "bandwidth" and r["share"] == approx(1.0)
    # batch 8: the weights are read once, the cache of every row: 2e8 + 8 x 2e7 = 3.6e8 bytes,
    # 8 x 2.2e8 = 1.76e9 FLOPs; 4.89 FLOP/byte, still under the ridge of 10
    w8 = rl.decode_step(N, W, rows=8, context=1000, layers=10, q_dim=500, kv_bytes=kv)
    assert (w8.flops, w8.bytes) == (1.76e9, 3.6e8)
    r8 = rl.bound(w8, 3.6e-3, peak_flops=1e12, bandwidth=1e11)
    assert r8["bound"] == "bandwidth" and r8["share"] == approx(1.0)
    # more positions per row (a tail of 16): 16 x the FLOPs, the same bytes
    assert rl.decode_step(N, W, rows=1, context=0, positions=16).flops == 3.2e9


def test_prefill_of_a_large_batch_is_bound_by_compute():
    """Batch 32 x 100 prompt tokens: 2 x 1e8 x 3,200 = 6.4e11 FLOPs over 2e8 bytes (3,200
    FLOP/byte, above the ridge of 10); in 1.28 s that is 5e11 FLOP/s, half of 1 TFLOP/s."""
    w = rl.prefill(N, W, rows=32, length=100)
    assert (w.flops, w.bytes) == (6.4e11, 2e8)
    r = rl.bound(w, 1.28, peak_flops=1e12, bandwidth=1e11)
    assert r["intensity"] == 3200.0 and r["bound"] == "compute"
    assert r["achieved_flops"] == approx(5e11) and r["share"] == approx(0.5)


def test_prefill_attention_is_causal():
    """One row of 1,000 tokens: position i attends i + 1 positions, 1,000 x 1,001 / 2 = 500,500
    in all: 4 x 10 x 500 x 500,500 = 1.001e10 attention FLOPs beside 2e11; the cache written is
    1,000 x 20,000 = 2e7 bytes."""
    w = rl.prefill(N, W, rows=1, length=1000, layers=10, q_dim=500, kv_bytes=20_000)
    assert w.flops == 2e11 + 1.001e10 and w.bytes == 2.2e8


def test_at_the_ridge_compute_binds():
    r = rl.bound(rl.Work(10.0, 1.0), 1.0, peak_flops=10.0, bandwidth=1.0)
    assert r["intensity"] == r["ridge"] == 10.0 and r["bound"] == "compute" and r["share"] == 1.0


# ---- the machine's peaks -----------------------------------------------------------------------

def test_measure_gives_positive_peaks_on_the_cpu():
    got = peaks.measure("cpu", n=64, elems=2 ** 16, repeats=2)
    assert set(got) == set(peaks.FIELDS)
    assert got["flops_float32"] > 0 and got["copy_bandwidth"] > 0 and got["read_bandwidth"] > 0
    assert got["flops_float16"] is None  # not measured on a CPU
    assert (got["flops_bfloat16"] is not None) == peaks.cpu_has_bf16()


def _stub(monkeypatch):
    calls = []

    def measure(device):
        calls.append(device)
        return {"flops_float32": 1e11, "flops_bfloat16": None, "flops_float16": None,
                "copy_bandwidth": 2e10, "read_bandwidth": 3e10}

    monkeypatch.setattr(peaks, "measure", measure)
    return calls


def test_peaks_are_measured_once_per_fingerprint_and_cached(tmp_path, monkeypatch):
    calls = _stub(monkeypatch)
    first = peaks.machine_peaks("cpu", "abc", cache=tmp_path, log=lambda m: None)
    again = peaks.machine_peaks("cpu", "abc", cache=tmp_path, log=lambda m: None)
    assert calls == ["cpu"] and first == again
    assert first["flops"] == {"float32": 1e11}  # no bfloat16 figure: not measured
    assert first["bandwidth"] == 3e10 and first["copy_bandwidth"] == 2e10
    peaks.machine_peaks("cpu", "other", cache=tmp_path, log=lambda m: None)
    assert len(calls) == 2  # another machine: measured again
    f = tmp_path / "peaks" / f"abc-v{peaks.VERSION}.npy"
    f.write_bytes(f.read_bytes()[:-3])  # a torn cache file is measured again, not used
    assert peaks.machine_peaks("cpu", "abc", cache=tmp_path, log=lambda m: None) == first
    assert len(calls) == 3


def test_the_fingerprint_holds_the_peaks_outside_its_id(tmp_path, monkeypatch):
    from tmbench.env import fingerprint

    calls = _stub(monkeypatch)
    monkeypatch.setenv("TMBENCH_CACHE", str(tmp_path))
    plain = fingerprint("cpu")
    fp = fingerprint("cpu", peaks=True)
    assert "peaks" not in plain and fp["id"] == plain["id"]
    assert fp["peaks"]["flops"]["float32"] == 1e11 and fp["peaks"]["bandwidth"] == 3e10
    assert fingerprint("cpu", peaks=True) == fp and len(calls) == 1  # the second run reads the cache
