"""Training: objectives, a falling loss, resume == uninterrupted, init_from, configs, CLI."""

import json

import pytest
import torch

from tmbench.backbones.gpt import GPT, GPTConfig
from tmbench.models.native_ar import NativeARModel
from tmbench.models.shipped import load_model_dir
from tmbench.tm.model import MaturationModel, TMConfig
from tmbench.tm.objective import tm_loss
from tmbench.train import main, train
from tmbench.training.build import build_for_training
from tmbench.training.config import ObjectiveConfig, OptimConfig, load_config
from tmbench.training.objective import ar_loss
from tmbench.training.optim import configure_optimizer, lr_at

torch.set_num_threads(1)
V, C = 64, 32
FAST = ["data.max_docs=8", "eval_blocks=2", "final_eval_blocks=2", "optim.batch_size=4",
        "data.block_size=16"]


def tiny(kind, readout="next"):
    torch.manual_seed(0)
    bb = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=C, block_size=32))
    if kind == "ar":
        return NativeARModel(bb, V)
    return MaturationModel(bb, TMConfig(vocab_size=V, readout=readout, k_max=8))


def fit(model, loss_fn, steps=40):
    opt = configure_optimizer(model, OptimConfig(lr=3e-3, weight_decay=0.0))
    losses = []
    for s in range(steps):
        loss = loss_fn(torch.Generator().manual_seed(s))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if model.kind == "tm":
            model.renorm_()
        losses.append(float(loss.detach()))
    return losses


X = torch.randint(0, V, (4, 24), generator=torch.Generator().manual_seed(0))


def test_ar_loss_falls_on_a_tiny_batch():
    m = tiny("ar")
    losses = fit(m, lambda g: ar_loss(m, X))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("readout,negatives", [("next", "all"), ("next", 16), ("self", "all")])
def test_tm_loss_falls_on_a_tiny_batch(readout, negatives):
    m = tiny("tm", readout)
    obj = ObjectiveConfig(k_max=8, negatives=negatives)
    losses = fit(m, lambda g: tm_loss(m, X, obj, g))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first
    assert torch.allclose(m.emb.norm(dim=-1), torch.full((V,), m.radius), atol=1e-3)


def test_tm_loss_parts_and_options():
    m = tiny("tm")
    g = torch.Generator().manual_seed(0)
    r = tm_loss(m, X, ObjectiveConfig(k_max=8, weighting="one_minus_alpha", p_uncond=1.0), g)
    assert set(r) >= {"loss", "mse", "nce", "tail_nce", "tail_mse", "K"}
    assert all(torch.isfinite(v).all() for v in r.values())
    # K = 1 at alpha_max 1 leaves the input clean, and the newest slot predicts nothing under
    # readout next; with w_mse 0 the loss is then the cross-entropy of the induced distribution
    r = tm_loss(m, X, ObjectiveConfig(k_max=8, w_mse=0.0, p_uncond=0.0), g, K=1, alpha_max=1.0)
    with torch.no_grad():
        T = X.shape[1]
        out = m(m.emb[X], torch.ones(X.shape), torch.zeros(X.shape, dtype=torch.bool),
                torch.full((4,), 1), torch.arange(T)[None].expand(4, T))[0]
        ce = torch.nn.functional.cross_entropy(m.induced_logits(out[:, :-1]).flatten(0, 1),
                                               X[:, 1:].flatten())
    assert float(r["loss"].detach()) == pytest.approx(float(ce), rel=1e-5)


def test_lr_schedule():
    o = OptimConfig(lr=1e-3, min_lr=1e-4, warmup=10, steps=110)
    assert lr_at(0, o) == pytest.approx(1e-4)
    assert lr_at(9, o) == pytest.approx(1e-3)
    assert lr_at(60, o) == pytest.approx(5.5e-4)
    assert lr_at(110, o) == pytest.approx(1e-4)


@pytest.mark.parametrize("kind", ["ar", "tm"])
def test_resumed_training_equals_uninterrupted(tmp_path, kind):
    cfg = load_config("test", FAST + [f"kind={kind}", "optim.steps=6", "ckpt_every=100",
                                      "eval_every=100"])
    train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False, stop_at=3)
    assert not (tmp_path / "b" / "final").exists()
    with pytest.raises(ValueError, match="--resume"):
        train(cfg, tmp_path / "b", progress=False)
    train(cfg, tmp_path / "b", progress=False, resume=True)
    a = load_model_dir(tmp_path / "a" / "final").state_dict()
    b = load_model_dir(tmp_path / "b" / "final").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(l) for l in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(l) for l in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    strip = lambda recs: [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in recs]
    assert strip(la) == strip(lb)
    other = load_config("test", FAST + [f"kind={kind}", "optim.steps=6", "seed=1"])
    with pytest.raises(ValueError, match="another config"):
        train(other, tmp_path / "b", progress=False, resume=True)


def test_resume_may_change_only_the_number_of_steps(tmp_path):
    cfg = load_config("test", FAST + ["optim.steps=8", "ckpt_every=100", "eval_every=100"])
    train(cfg, tmp_path / "r", progress=False, stop_at=3)
    short = load_config("test", FAST + ["optim.steps=5", "ckpt_every=100", "eval_every=100"])
    train(short, tmp_path / "r", progress=False, resume=True)
    trained = json.loads((tmp_path / "r" / "final" / "config.json").read_text())["trained"]
    assert trained["steps"] == 5
    assert trained["rescheduled"] == [{"at_step": 3, "from_steps": 8, "to_steps": 5}]


def test_tm_init_from_the_ar_twin(tmp_path):
    cfg = load_config("test", FAST + ["optim.steps=2"])
    train(cfg, tmp_path / "ar", progress=False)
    ar = load_model_dir(tmp_path / "ar" / "final")
    tm_cfg = load_config("test", FAST + ["kind=tm", f"init_from={tmp_path / 'ar' / 'final'}"])
    tm, tok = build_for_training(tm_cfg)
    assert tok.encode("The film") == ar.tokenizer.encode("The film")
    sd_ar, sd_tm = ar.backbone.state_dict(), tm.backbone.state_dict()
    assert all(torch.equal(sd_ar[k], sd_tm[k]) for k in sd_ar)
    want = torch.nn.functional.normalize(ar.wte, dim=-1) * tm.radius
    assert torch.allclose(tm.emb, want, atol=1e-5)
    with torch.no_grad():
        assert float(tm.input_scale) == pytest.approx(float(ar.wte.norm(dim=-1).mean()) / tm.radius,
                                                      rel=1e-5)
    # AR-continue from the same folder copies everything
    ar2, _ = build_for_training(load_config("test", FAST + [f"init_from={tmp_path / 'ar' / 'final'}"]))
    assert all(torch.equal(v, ar2.state_dict()[k]) for k, v in ar.state_dict().items())


def test_config_errors():
    with pytest.raises(ValueError, match="unknown field"):
        load_config("test", ["optim.lrate=1"])
    with pytest.raises(ValueError, match="unknown training config"):
        load_config("no-such-config")
    with pytest.raises(ValueError, match="negatives"):
        load_config("test", ["objective.negatives=-3"])
    for name in ("tiny", "gpt2-medium"):
        cfg = load_config(name)
        assert cfg.backbone["n_layer"] in (4, 24)


def test_cli_entry_points(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["test", "--out", str(out), "--steps", "2", "--no-progress", "--export",
               str(tmp_path / "exp"), *sum((["--set", s] for s in FAST), [])])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.split("exported")[0])["out"] == str(out)
    m = load_model_dir(tmp_path / "exp")
    assert m.dtype == torch.float32 and m.kind == "ar"
    assert main(["test", "--set", "optim.nope=1"]) == 2
    import argparse

    from tmbench.train import add_train_cli

    p = argparse.ArgumentParser()
    add_train_cli(p.add_subparsers(dest="cmd"))
    args = p.parse_args(["train", "tiny", "--kind", "tm", "--resume", "--threads", "1"])
    assert args.kind == "tm" and args.resume and callable(args.handler)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ar", "tm"])
def test_init_from_smollm2_through_the_adapter(kind):
    pytest.importorskip("gguf")
    try:
        from tmbench.models.hf import smollm2_path

        smollm2_path()
    except ValueError as e:
        pytest.skip(str(e))
    cfg = load_config("test", FAST + [f"kind={kind}", "init_from=smollm2-135m"])
    model, tok = build_for_training(cfg)
    ids = tok.encode("The BBC reported that")
    with torch.no_grad():
        if kind == "ar":
            out = model.prefill([ids])
            assert out.logits.shape[-1] == model.vocab_size
        else:
            lp = model.token_logprobs([ids])[0]
            assert lp.shape == (len(ids) - 1,) and torch.isfinite(lp).all()
