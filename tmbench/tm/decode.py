"""The ``maturation`` decoder: Token Maturation decoding (DESIGN 3.4).

Each new token starts as an embryo vector at the back of a liquid tail of K slots. Every step
runs one forward over the tail (the committed prefix sits in the KV cache), moves every slot
toward its prediction, z <- z + eta(alpha) * (z_hat - z), and, after K - 1 warm-up steps,
commits the front slot to its nearest embedding, appends that token to the prefix and a new
embryo to the tail. Maturity grows toward the front: alpha_j = alpha_max * (K - j) / K.

The loop in :func:`maturation` reads as DESIGN 3.4: :func:`init_state` (step 1), the warm-up
(2), :func:`update` (3, 4 and the update noise of 6), :func:`commit` (5, and the sampled commit
of 6) and :func:`slide` (the rest of 5); :class:`tmbench.tm.trace.Recorder` records 7. Every
random draw comes from ``generator``: the K first embryos, then per step the update noise,
the sampled commit and the new embryo, in that order.

Guidance (scale s != 1) adds a pass with the tail-only mask: z_hat = z_u + s * (z_c - z_u).
Both passes run as one forward of 2B rows (rows B..2B-1 under the tail-only mask): the window
then keeps two copies of every row's KV cache, one per pass, so no cache is copied per step.
Under ``readout: next`` the front slot's prediction is read at the last committed position,
which the tail-only mask does not touch, so guidance never changes the front slot's
prediction there; it acts through the other slots only.

Context: when a row's tail would run past the model's learned positions, its committed text
is re-encoded from a later start (a multiple of a quarter of the context), chosen from the
row's own length so that batching does not change a row's result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from tmbench.decoders._loop import check
from tmbench.models.base import check_finite
from tmbench.tm.trace import Recorder, TailHealth
from tmbench.types import DecodeOutput, first_token, model_kind, seed_free

ETA = {
    "alpha": lambda a: a,  # the paper's choice: step size = maturity
    "sqrt": lambda a: a.sqrt(),  # larger early steps
    "one": lambda a: torch.ones_like(a),  # jump to the prediction (no averaging)
}
EMBRYOS = ("gaussian", "zeros")
FEEDS = ("state", "expected", "nearest")


def _check_params(model, prompts, max_new_tokens, tail_len, alpha_max, guidance, eta_schedule,
                  embryo, sigma_embryo, sigma_dyn, sample_commit, trace, trace_scales, feed):
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty token lists")
    check("max_new_tokens", max_new_tokens, 1, integer=True)
    ctx = model.context_length()
    check("tail_len", tail_len, 1, ctx - 1, integer=True)
    check("alpha_max", alpha_max, 0, 1, lo_open=True)
    check("guidance", guidance, 0)
    check("sigma_embryo", sigma_embryo, 0)
    check("sigma_dyn", sigma_dyn, 0)
    if eta_schedule not in ETA:
        raise ValueError(f"eta_schedule must be one of {', '.join(ETA)}, got {eta_schedule!r}")
    if feed not in FEEDS:
        raise ValueError(f"feed must be one of {', '.join(FEEDS)}, got {feed!r}")
    if embryo not in EMBRYOS:
        raise ValueError(f"embryo must be one of {', '.join(EMBRYOS)}, got {embryo!r}")
    for name, v in (("sample_commit", sample_commit), ("trace", trace)):
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be true or false, got {v!r}")
    if (isinstance(trace_scales, (str, bytes)) or not isinstance(trace_scales, Sequence)
            or not trace_scales):
        raise ValueError("trace_scales must be a non-empty list of numbers > 0, "
                         f"got {trace_scales!r}")
    for s in trace_scales:
        check("trace_scales[i]", s, 0, lo_open=True)


class _Noise:
    """Gaussian draws of norm about ``sigma * R`` per vector, from one generator or one per row
    (then row b's draws never depend on the batch)."""

    def __init__(self, generator, B: int, d: int, radius: float, device):
        if isinstance(generator, (list, tuple)):
            if len(generator) != B:
                raise ValueError(f"generator must be one torch.Generator or one per prompt ({B}), "
                                 f"got a sequence of {len(generator)}")
        self.gen, self.B, self.d, self.R, self.device = generator, B, d, radius, device

    def __call__(self, n: int, sigma: float) -> torch.Tensor:  # (B, n, d)
        if isinstance(self.gen, (list, tuple)):
            x = torch.stack([torch.randn(n, self.d, generator=g) for g in self.gen])
        else:
            x = torch.randn(self.B, n, self.d, generator=self.gen)
        return (x * (sigma * self.R / math.sqrt(self.d))).to(self.device)

    def multinomial(self, probs: torch.Tensor) -> torch.Tensor:  # (B, V) -> (B,)
        probs = probs.cpu()
        if isinstance(self.gen, (list, tuple)):
            return torch.cat([torch.multinomial(probs[b:b + 1], 1, generator=g)[:, 0]
                              for b, g in enumerate(self.gen)]).to(self.device)
        return torch.multinomial(probs, 1, generator=self.gen)[:, 0].to(self.device)


class _Window:
    """The committed tokens of every row and the KV cache over all but the last of them.

    ``copies`` = 2 under guidance: rows b and B + b of the cache, ``key_real``, ``pending`` and
    ``positions`` are the same row, forwarded once with the full mask and once with the
    tail-only mask in one batch."""

    def __init__(self, model, rows: list[list[int]], K: int, copies: int = 1):
        self.model, self.K, self.copies = model, K, copies
        self.ctx = model.context_length()
        self.stride = max(1, self.ctx // 4)
        self.rows = [list(r) for r in rows]
        self.starts = [self._start(len(r)) for r in self.rows]
        self.rebuild()

    def _start(self, n: int) -> int:
        # the pending token sits at position n - 1 - start and the forwarded tail slots after
        # it; under readout `next` the newest slot is not forwarded (it predicts nothing)
        over = n + self.K - self.model.readout_shift - self.ctx
        return 0 if over <= 0 else -(-over // self.stride) * self.stride

    def rebuild(self) -> None:
        m, dev, c = self.model, self.model.device, self.copies
        prefix = [r[s:-1] for r, s in zip(self.rows, self.starts)]
        B, S = len(prefix), max(len(p) for p in prefix)
        ids = torch.zeros(B, S, dtype=torch.long)
        real = torch.zeros(B, S, dtype=torch.long)
        for b, p in enumerate(prefix):
            if p:
                ids[b, S - len(p):] = torch.tensor(p)
                real[b, S - len(p):] = 1
        ids, real = ids.to(dev), real.to(dev)
        pos = (real.cumsum(-1) - 1).clamp(min=0)
        self.cache = m.prefill(ids, real, pos) if S else m.new_cache()
        if c > 1 and S:  # one prefill, then a copy of each row's cache per pass
            self.cache = m.select_cache(self.cache, torch.arange(B, device=dev).repeat(c))
        self.key_real = real.repeat(c, 1)  # (c * B, S)
        self.pending = torch.tensor([r[-1] for r in self.rows], device=dev).repeat(c)
        self.positions = torch.tensor([len(p) for p in prefix], device=dev).repeat(c)

    def keep_prefix(self, cache) -> None:
        """Drop what this step forwarded (pending token and tail) from ``cache`` and keep it."""
        self.cache = self.model.crop_cache(cache, self.key_real.shape[1])

    def commit(self, tokens: torch.Tensor, cache) -> None:
        """Keep the pending token's keys/values (forwarded this step) and make ``tokens`` (B,)
        pending."""
        self.cache = self.model.crop_cache(cache, self.key_real.shape[1] + 1)
        self.key_real = torch.cat([self.key_real, self.key_real.new_ones(len(self.key_real), 1)], 1)
        for r, t in zip(self.rows, tokens.tolist()):
            r.append(t)
        self.pending, self.positions = tokens.repeat(self.copies), self.positions + 1
        starts = [self._start(len(r)) for r in self.rows]
        if starts != self.starts:
            self.starts = starts
            self.rebuild()


@dataclass
class State:
    """What the loop carries from step to step."""

    win: _Window  # the committed tokens of every row and the KV cache over them
    tail: torch.Tensor  # (B, K, d) the liquid slots, front (oldest) .. newest
    alpha: torch.Tensor  # (K,) maturity, front .. newest
    eta: torch.Tensor  # (1, K, 1) step size eta(alpha)
    embryos: Callable[[int], torch.Tensor]  # n -> (B, n, d) new embryos
    noise: _Noise  # every random draw: embryos, update noise, sampled commits


def init_state(model, prompts: list[list[int]], generator, K: int, alpha_max: float,
               eta_schedule: str, embryo: str, sigma_embryo: float, guided: bool = False) -> State:
    """DESIGN 3.4 step 1: the prompts' exact embeddings as the prefix (alpha = 1, in the KV
    cache, twice when ``guided``), the maturity profile alpha_j = alpha_max * (K - j) / K with
    step sizes eta(alpha), and a tail of K embryos (the generator's first draws)."""
    B, d = len(prompts), model.d
    noise = _Noise(generator, B, d, model.radius, model.device)
    alpha = model.alpha_profile(K, alpha_max)  # (K,) front .. newest
    eta = ETA[eta_schedule](alpha)[None, :, None]  # (1, K, 1)

    def embryos(n: int) -> torch.Tensor:  # (B, n, d)
        if embryo == "zeros":
            return torch.zeros(B, n, d, device=model.device)
        return noise(n, sigma_embryo)

    win = _Window(model, prompts, K, copies=2 if guided else 1)
    return State(win, embryos(K).to(model.dtype), alpha, eta, embryos, noise)


def fed(model, st: State, feed: str) -> torch.Tensor:
    """(B, K, d) what the tail slots pass on as the network's input: the state itself
    (``state``, the paper's literal reading), alpha times the state's expected embedding under
    the induced distribution (``expected``) or alpha times its nearest embedding (``nearest``);
    the last two are inputs of the form training builds, alpha * e."""
    if feed == "state":
        return st.tail
    a = st.alpha[None, :, None]  # (1, K, 1)
    if feed == "expected":
        return (a * model.expected_embedding(st.tail)).to(st.tail.dtype)
    return (a * model.emb[model.nearest(st.tail)].float()).to(st.tail.dtype)


def _forward(model, st: State, inputs: torch.Tensor, guidance: float, as_text: bool = False):
    """One tail forward (both guidance passes in one batch of 2B rows when s != 1); returns
    z_hat (B, K, d) and the cache extended by the forwarded positions."""
    win, B = st.win, inputs.shape[0]
    if win.copies == 1:  # no guidance: the window holds one cache copy per row
        return model.tail_step(win.pending, inputs, st.alpha, win.key_real, win.positions,
                               win.cache, as_text=as_text)
    only = torch.arange(2 * B, device=inputs.device) >= B  # (2B,) the unguided pass
    z, cache = model.tail_step(win.pending, torch.cat([inputs, inputs]), st.alpha, win.key_real,
                               win.positions, win.cache, tail_only=only & (not as_text),
                               as_text=as_text)
    z_c, z_u = z[:B], z[B:]
    return (z_c if as_text else z_u + guidance * (z_c - z_u)), cache


def as_text_prediction(model, st: State, guidance: float) -> torch.Tensor:
    """(B, K) nearest tokens of the predictions the model makes when the tail's own nearest
    tokens enter as exact embeddings, read as committed text (``tail_readability``'s
    reference). Runs on the window's cache and crops it back, so the step is unchanged."""
    text = model.emb[model.nearest(st.tail)].to(st.tail.dtype)  # (B, K, d)
    z, cache = _forward(model, st, text, guidance, as_text=True)
    st.win.keep_prefix(cache)
    return model.nearest(z)


def update(model, st: State, guidance: float, sigma_dyn: float, step: int,
           inputs: torch.Tensor | None = None):
    """DESIGN 3.4 steps 3, 4 and 6: one forward over the tail (with guidance s != 1, of both
    passes in one batch, the second under the tail-only mask: z_hat = z_u + s * (z_c - z_u));
    then every slot moves toward its prediction, z <- z + eta(alpha) * (z_hat - z), plus noise
    of norm about sigma_dyn * R. ``inputs`` (B, K, d): what the slots feed the network (see
    :func:`fed`; default the states). Returns z_hat (B, K, d) and the cache extended by this
    step's positions."""
    (B, K, _) = st.tail.shape
    z_hat, cache = _forward(model, st, st.tail if inputs is None else inputs, guidance)
    check_finite(z_hat.flatten(1), model.name, f"in the tail predictions at maturation step {step}")
    new = st.tail + st.eta * (z_hat - st.tail)  # (B, K, d)
    if sigma_dyn > 0:
        new = new + st.noise(K, sigma_dyn).to(new.dtype)
    st.tail = new
    return z_hat, cache


def commit(model, st: State, sample_commit: bool,
           z_front: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DESIGN 3.4 steps 5 and 6: the front slot's token (B,), its nearest embedding or, with
    ``sample_commit``, a draw from the induced distribution (model logit scale); and the
    nearest embedding of the front slot's prediction ``z_front`` (B, d), for
    ``agree_front_argmax``. Both nearest embeddings come from one product with E, which reads
    E (V x d) once per commit instead of twice."""
    front = st.tail[:, 0]  # (B, d)
    if sample_commit:
        return (st.noise.multinomial(torch.softmax(model.induced_logits(front), -1)),
                model.nearest(z_front))
    both = model.nearest(torch.cat([front, z_front]))  # (2B,)
    return both[:len(front)], both[len(front):]


def slide(st: State, tok: torch.Tensor, cache) -> None:
    """DESIGN 3.4 step 5, continued: the committed tokens (B,) join the prefix (their keys and
    values, forwarded this step, stay in the cache; the window re-encodes from a later start
    when the context would overflow), the tail shifts by one and a new embryo enters at the back."""
    st.win.commit(tok, cache)
    st.tail = torch.cat([st.tail[:, 1:], st.embryos(1).to(st.tail.dtype)], 1)


def _draws_nothing(params: dict) -> bool:
    """Zero embryos, no update noise and argmax commits: the generator is never drawn from."""
    return (params.get("embryo") == "zeros" and params.get("sigma_dyn", 0.0) == 0
            and not params.get("sample_commit", False))


@seed_free(when=_draws_nothing)
@model_kind("tm")
@torch.no_grad()
def maturation(model, prompts: list[list[int]], *, max_new_tokens: int, generator,
               tail_len: int = 16, alpha_max: float = 0.75, guidance: float = 1.0,
               eta_schedule: str = "alpha", embryo: str = "gaussian", sigma_embryo: float = 0.1,
               sigma_dyn: float = 0.0, sample_commit: bool = False, trace: bool = False,
               trace_scales: Sequence[float] = (1.0, 20.0), feed: str = "state",
               health: bool = False) -> DecodeOutput:
    """Token Maturation decoding of a batch of prompts (left-padded internally).

    tail_len K: slots in the tail (1 .. context - 1; K > the model's k_max reuses the k_max
    FiLM embedding, which training never paired with a longer tail); alpha_max: maturity of
    the front slot (0, 1]; guidance: classifier-free guidance scale (1 = off); eta_schedule:
    step size from maturity (alpha | sqrt | one); embryo: initial tail vectors (gaussian of
    norm sigma_embryo * R, or zeros); sigma_dyn: Gaussian noise of norm ~sigma_dyn * R added
    to every update; sample_commit: draw the committed token from the induced distribution
    (model logit scale) instead of the nearest embedding; trace: record the dynamics and the
    tail's health (see below); health: record the tail's health only (it needs one more
    forward per step); feed: what a tail
    slot passes on as input (``state``: the state itself; ``expected``: alpha x its expected
    embedding; ``nearest``: alpha x its nearest embedding).
    ``generator``: one torch.Generator, or one per prompt (then a row never depends on the
    batch). Defaults are deterministic given the generator (the embryos are its only draw).

    Returns ``DecodeOutput(tokens, info)``; tokens stop at (and include) EOS. info
    ``agree_front_argmax``: per sample, the share of commits equal to the argmax of the front
    slot's final prediction z_hat. With ``trace``, info ``trace``: per sample, a
    :class:`tmbench.types.Trace` (the format is described there). With ``trace`` or
    ``health``, info ``tail``: per sample, a :class:`tmbench.types.TailHealth`.
    """
    _check_params(model, prompts, max_new_tokens, tail_len, alpha_max, guidance, eta_schedule,
                  embryo, sigma_embryo, sigma_dyn, sample_commit, trace, trace_scales, feed)
    if not isinstance(health, bool):
        raise ValueError(f"health must be true or false, got {health!r}")
    B, K = len(prompts), tail_len
    st = init_state(model, prompts, generator, K, alpha_max, eta_schedule, embryo, sigma_embryo,
                    guided=guidance != 1.0)
    rec = Recorder(model, B, K, [float(s) for s in trace_scales]) if trace else None
    tails = TailHealth(model, B) if trace or health else None
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=model.device)
    agree = torch.zeros(B)

    for step in range(K - 1 + max_new_tokens):
        old, inputs = st.tail, fed(model, st, feed)
        committing = step >= K - 1
        text_tok = (as_text_prediction(model, st, guidance)
                    if tails is not None and committing else None)
        z_hat, cache = update(model, st, guidance, sigma_dyn, step, inputs)
        if rec is not None:
            rec.update(old, st.tail)
        if not committing:  # step 2, warm-up: no commitment, so every token gets K updates
            st.win.keep_prefix(cache)
            continue
        if tails is not None:
            tails.health(inputs, st.tail, z_hat, text_tok, st.alpha, sigma_embryo, ~done)
        tok, pred = commit(model, st, sample_commit, z_hat[:, 0])
        if step == K - 1:
            first_token()
        live = (~done).cpu()
        agree += (live & (tok == pred).cpu()).float()
        for b in torch.nonzero(live)[:, 0].tolist():
            out[b].append(int(tok[b]))
        if rec is not None:
            rec.commit(tok, live)
        if model.eos_token_id is not None:
            done |= tok == model.eos_token_id
        if bool(done.all()) or step == K - 2 + max_new_tokens:
            break
        slide(st, tok, cache)

    info = {"agree_front_argmax": [float(agree[b]) / max(1, len(out[b])) for b in range(B)]}
    if trace:
        info["trace"] = rec.traces
    if tails is not None:
        info["tail"] = tails.rows
    return DecodeOutput(out, info)
