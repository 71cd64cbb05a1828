"""Private text generation with a key/value cache that stays secret-shared between steps.

A causal language model (Hugging Face ``*ForCausalLM`` / ``GPT2LMHeadModel``) is captured
twice at its owner, and both graphs run on one set of secret-shared weights:

* **prefill**: the whole prompt once: ``(ids (B, P), positions, mask) -> (last logits,
  k_0, v_0, k_1, v_1, ...)`` with every layer's keys and values for the P positions;
* **step**: one new token against a *fixed-size* cache of ``max_len = P + new - 1``
  slots: ``(ids (B, 1), position, mask (B, max_len + 1), k_0, v_0, ...) -> (logits,
  the new token's k_0, v_0, ...)``. Slots not filled yet hold zeros and are masked out
  by the (public) attention mask, so one graph serves every step and only the new
  token's activations are computed.

Between steps the cache is a list of SecretTensors; writing the new token's keys and
values into its slot is local (no traffic). Each step's logits go through a secret
argmax; the resulting token is revealed to the prompt's owner only, who shares it
(one-hot) as the next step's input.

What each party learns: the architecture and shapes (both graphs, as with
`veil.secure`), the prompt length and the number of generated tokens (public by
contract); the prompt owner learns the generated tokens (the output it asked for, and
with ``return_logits=True`` the logits too); nothing else is revealed to anyone.
Positions and masks are public: they depend only on the lengths.

>>> import torch, veil
>>> from veil.compile import zoo
>>> from veil.compile.decoder import secure_decoder, greedy_reference
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> lm = zoo.hf_gpt2(vocab=40, d=16, heads=2, layers=1, seq=16)
>>> prompt = torch.tensor([[5, 17, 3]])
>>> def job():
...     mine = veil.rank() == 0
...     dec = secure_decoder(lm if mine else None, owner=0, prompt_len=3, max_new_tokens=4)
...     return dec.generate(prompt if veil.rank() == 1 else None, owner=1)
>>> out = veil.run(job, parties=2, seed=0)
>>> out[0] is None, out[1].tokens.tolist() == greedy_reference(lm, prompt, 4).tolist()
(True, True)
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..context import current, stats, stats_since
from ..errors import ProtocolUsageError
from ..tensor import cat
from .capture import capture
from .graph import Graph
from .secure import SecureModule, _share_weights, publish_graph
from .validate import GraphLimits

PUBLIC = ("position_ids", "attention_mask")


class KVStep(nn.Module):
    """A causal LM as a function of plain tensors, so that it can be captured:
    ``(input_ids, position_ids, attention_mask, k_0, v_0, ..., k_{L-1}, v_{L-1})`` ->
    ``(logits of the last position, the input tokens' k_0, v_0, ...)``.

    With no past tensors it is the prefill; with past tensors of ``max_len`` slots, the
    model appends the new tokens' keys and values after them (Hugging Face's
    ``DynamicCache``) and the outputs are those new entries only. Plain PyTorch: it runs
    (and is checked) in plaintext exactly as it is captured.
    """

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        params = inspect.signature(lm.forward).parameters
        # transformers >= 5 calls it ``cache``; older versions ``past_key_values``
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def forward(self, input_ids, position_ids, attention_mask, *past):
        from transformers import DynamicCache
        if len(past) % 2:
            raise ProtocolUsageError("past keys and values come in pairs (k_0, v_0, k_1, ...)")
        pairs = [(past[i], past[i + 1]) for i in range(0, len(past), 2)]
        cache = DynamicCache(ddp_cache_data=pairs) if pairs else \
            DynamicCache(config=self.lm.config)
        out = self.lm(input_ids=input_ids, position_ids=position_ids,
                      attention_mask=attention_mask, use_cache=True, logits_to_keep=1,
                      **{self._cache_kw: cache})
        new = getattr(out, "cache", None) or out.past_key_values
        s = input_ids.shape[1]
        kv = []
        for layer in new.layers:
            kv += [layer.keys[:, :, -s:], layer.values[:, :, -s:]]
        return (out.logits[:, -1], *kv)


@dataclass
class Generation:
    """What `SecureDecoder.generate` returns at the prompt owner."""
    tokens: torch.Tensor                      # (B, new) generated token ids
    logits: list = field(default_factory=list)    # per step (B, vocab), if asked for
    prefill_s: float = 0.0                    # prompt processing, this party's wall clock
    step_s: list = field(default_factory=list)    # per generated token after the first
    prefill_stats: dict = field(default_factory=dict)   # veil.stats() deltas
    step_stats: list = field(default_factory=list)


def secure_decoder(model, owner: int, prompt_len: int, max_new_tokens: int, *,
                   batch: int = 1, limits: GraphLimits | None = None) -> SecureDecoder:
    """Capture ``model`` (a Hugging Face causal LM held by party ``owner``; the other
    parties pass None) for generating ``max_new_tokens`` after a prompt of
    ``prompt_len`` tokens, and secret-share its weights once for both graphs.

    The two graphs and their shapes are public, as with `veil.secure`; the lengths fix
    the shapes, so a decoder serves every prompt of that length.
    """
    ctx = current()
    for name, v in (("prompt_len", prompt_len), ("max_new_tokens", max_new_tokens),
                    ("batch", batch)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ProtocolUsageError(f"{name} must be a positive int, got {v!r}")
    if not isinstance(owner, int) or not 0 <= owner < ctx.world_size:
        raise ProtocolUsageError(f"owner must be a party in 0..{ctx.world_size - 1}, got "
                                 f"{owner!r}")
    max_len = prompt_len + max_new_tokens - 1
    pre = step = weights = None
    if ctx.rank == owner:
        if model is None:
            raise ProtocolUsageError(f"party {owner} owns the model but passed None")
        pre, step, weights = _capture(model, prompt_len, max_len, batch)
    elif model is not None:
        raise ProtocolUsageError(f"party {ctx.rank} passed a model owned by party {owner}; "
                                 f"the other parties pass None")
    pre = publish_graph(pre, owner, limits)
    step = publish_graph(step, owner, limits)
    _check_same_weights(pre, step)
    shared = _share_weights(step, weights, owner)          # once, for both graphs
    dense: dict = {}                                       # one dense LM head for both
    return SecureDecoder(SecureModule(pre, shared, dense), SecureModule(step, shared, dense),
                         prompt_len, max_new_tokens, batch)


def _capture(model, prompt_len, max_len, batch):
    if not hasattr(model, "config") or not hasattr(model.config, "num_hidden_layers"):
        raise ProtocolUsageError(f"secure_decoder takes a Hugging Face causal LM (e.g. "
                                 f"GPT2LMHeadModel), got {type(model).__name__}")
    wrapped = KVStep(model).eval()
    ids = torch.zeros(batch, prompt_len, dtype=torch.long)
    pre_args = (ids, _positions(batch, 0, prompt_len), torch.ones(batch, prompt_len,
                                                                   dtype=torch.long))
    with torch.no_grad():
        _, *kv = wrapped(*pre_args)          # the cache's shapes: (B, heads, P, head dim)
    past = [torch.zeros(*t.shape[:2], max_len, t.shape[3]) for t in kv]
    step_args = (ids[:, :1], _positions(batch, prompt_len, 1),
                 _mask(batch, prompt_len, max_len), *past)
    pre, weights = capture(wrapped, pre_args, public_inputs=PUBLIC)
    step, step_weights = capture(wrapped, step_args, public_inputs=PUBLIC)
    weights.update(step_weights)
    return pre, step, weights


def _check_same_weights(pre: Graph, step: Graph) -> None:
    have = {p.name: tuple(p.shape) for p in step.params}
    for p in pre.params:
        if have.get(p.name) != tuple(p.shape):
            raise ProtocolUsageError(f"prefill and step graphs disagree on weight {p.name!r}; "
                                     f"the model must be a plain causal LM")


def _positions(batch, start, n):
    return torch.arange(start, start + n).expand(batch, n).contiguous()


def _mask(batch, filled, max_len):
    """Public: slots [0, filled) of the cache and the new token (the last column) attend."""
    m = torch.zeros(batch, max_len + 1, dtype=torch.long)
    m[:, :filled] = 1
    m[:, -1] = 1
    return m


class SecureDecoder:
    """Greedy generation on secret weights with a secret key/value cache; see the module
    docstring. Build it with `secure_decoder`."""

    def __init__(self, prefill: SecureModule, step: SecureModule, prompt_len: int,
                 max_new_tokens: int, batch: int):
        self.prefill, self.step = prefill, step
        self.prompt_len, self.max_new_tokens, self.batch = prompt_len, max_new_tokens, batch
        self.max_len = prompt_len + max_new_tokens - 1

    def __repr__(self) -> str:
        return (f"SecureDecoder(owner={self.prefill.owner}, prompt_len={self.prompt_len}, "
                f"max_new_tokens={self.max_new_tokens}, batch={self.batch})")

    def generate(self, prompt, owner: int, max_new_tokens: int | None = None, *,
                 return_logits: bool = False, on_token=None):
        """Greedy continuation of ``prompt`` (token ids (B, P), given at ``owner`` only).

        Returns a `Generation` at ``owner`` and None at every other party. With
        ``return_logits`` the owner also gets every step's logits (for checking
        accuracy; it discloses the whole next-token distribution to the owner).
        ``on_token(i, seconds, stats)``, if given, is called at every party after token
        ``i`` with this party's wall time and `veil.stats()` counts for it (token 0
        includes the prompt): progress and per-party costs, nothing secret.
        """
        ctx = current()
        n = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        if not isinstance(n, int) or not 1 <= n <= self.max_new_tokens:
            raise ProtocolUsageError(f"max_new_tokens must be in 1..{self.max_new_tokens} "
                                     f"(the decoder's cache size), got {n!r}")
        mine = ctx.rank == owner
        if mine:
            prompt = torch.as_tensor(prompt)
            if tuple(prompt.shape) != (self.batch, self.prompt_len):
                raise ProtocolUsageError(f"prompt has shape {tuple(prompt.shape)}; the decoder "
                                         f"was built for ({self.batch}, {self.prompt_len})")
        out = Generation(torch.zeros(self.batch, 0, dtype=torch.long))
        provider = ctx.provider
        b, p = self.batch, self.prompt_len
        tokens, cache = [], None
        for i in range(n):
            s0, t0 = stats(), time.perf_counter()
            # One dealer request plan per token (veil.offline.plan): sharing the input,
            # the graph and the argmax make the same requests every step, so from the
            # second step on the dealer works ahead from the step's first request.
            if i == 0:
                with provider.plan("decoder-prefill:" + self.prefill.plan_tag):
                    ids = self.prefill.share_input("input_ids", prompt if mine else None,
                                                   owner=owner)
                    logits, *kv = self.prefill(ids, _positions(b, 0, p),
                                               torch.ones(b, p, dtype=torch.long))
                    # Fixed-size cache: the prompt's entries, then zero slots (public
                    # zeros, lifted to shares locally) that later steps fill in place.
                    cache = [cat([t, torch.zeros(*t.shape[:2], self.max_len - p,
                                                 t.shape[3])], dim=2) for t in kv]
                    tok = self._next_token(logits, owner)
            else:
                with provider.plan("decoder-step:" + self.step.plan_tag):
                    x = self.step.share_input("input_ids", tok[:, None] if mine else None,
                                              owner=owner)
                    logits, *new = self.step(x, _positions(b, p + i - 1, 1),
                                             _mask(b, p + i - 1, self.max_len), *cache)
                    for c, t in zip(cache, new):
                        c[:, :, p + i - 1:p + i] = t            # local: a share write
                    tok = self._next_token(logits, owner)
            tokens.append(tok)
            seconds, counts = time.perf_counter() - t0, stats_since(s0)
            if i == 0:
                out.prefill_s, out.prefill_stats = seconds, counts
            else:
                out.step_s.append(seconds)
                out.step_stats.append(counts)
            if on_token is not None:
                on_token(i, seconds, counts)
            if return_logits:             # after the stamp: not part of the step's cost
                got = logits.reveal(to=owner)
                if mine:
                    out.logits.append(got)
        if not mine:
            return None
        out.tokens = torch.stack([t.long() for t in tokens], dim=1)
        return out

    @staticmethod
    def _next_token(logits, owner: int):
        # Discloses the next token to the prompt owner only: the output of generation.
        # The other parties learn nothing from it (they get None).
        return logits.argmax(-1).reveal(to=owner)


def greedy_reference(model, prompt, new_tokens: int) -> torch.Tensor:
    """torch's greedy continuation (full recomputation each step, no cache): the oracle."""
    ids = torch.as_tensor(prompt)
    out = []
    with torch.no_grad():
        for _ in range(new_tokens):
            nxt = model(ids).logits[:, -1].argmax(-1)
            out.append(nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
    return torch.stack(out, dim=1)


__all__ = ["Generation", "KVStep", "SecureDecoder", "greedy_reference", "secure_decoder"]
