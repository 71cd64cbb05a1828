"""The two-party flow: the data owner (client) and the model owner (server).

Set-up (once): server -> client the plan's public header (parameter set, rotation steps,
sizes); client -> server relinearisation + Galois keys. Per inference: client -> server
one bundle of ciphertexts; server -> client one bundle back. Nothing else crosses: the
secret key has no serialisation path, and decrypted values stay with the client.

Threat model: semi-honest server (it follows the plan; it learns the parameter set and the
number and size of queries, nothing about their content — IND-CPA of CKKS under RLWE).
The client learns the model's output (and, from the header, the layer sizes and rotation
steps). A malicious server could return a wrong result; it cannot learn more from
ciphertexts. Every received object is validated before it is parsed.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..context import recv_bytes, send_bytes
from .backend import HEError
from .compile import Plan
from .evaluator import Evaluator
from .keys import SecretKeys, _n_keys, backend_for
from .pack import periodic, pow2
from .params import get_params
from .run import Prepared, rotation_steps
from .wire import hello, pack, parse_hello, unpack


class Server:
    """Model owner: holds the compiled plan and only public keys.

    ``layout="vector"``: one input per query (lowest latency); ``"batch"``: up to
    ``slots`` inputs per query (highest throughput).
    """

    def __init__(self, plan: Plan, client: int, layout: str = "vector") -> None:
        self.plan, self.client, self.layout = plan, client, layout
        p = plan.params
        steps = sorted(rotation_steps(plan, p.slots)) if layout == "vector" else []
        send_bytes(hello(p.name, steps, plan.n_in, plan.n_out, layout), to=client)
        be = backend_for(p)
        n_keys = _n_keys(steps, p)
        relin, galois = unpack(recv_bytes(client), 2, be.max_key_bytes(max(n_keys, 1)),
                               "evaluation keys")
        rk, gk = be.load_eval_keys(relin, galois, n_keys)
        self.ev = Evaluator(p, be, rk, gk, steps)
        self.prepared = Prepared(plan, self.ev, layout)
        self.cpu_s: list[float] = []          # CPU seconds per query (load-independent)

    def serve(self, queries: int = 1) -> None:
        """Answer ``queries`` inferences, one message in and one out each."""
        be, p = self.ev.be, self.plan.params
        n = 1 if self.layout == "vector" else self.plan.n_in
        for _ in range(queries):
            blobs = unpack(recv_bytes(self.client), n, be.max_ct_bytes, "query")
            t0 = time.thread_time()
            cts = [be.ct_from_bytes(b) for b in blobs]
            for ct in cts:
                if be.level(ct) != p.levels or abs(be.scale(ct) / p.scale - 1) > 1e-9:
                    raise HEError("query: ciphertext is not a fresh encryption at the agreed "
                                  "level and scale")
            out = self.prepared.run(cts[0] if self.layout == "vector" else cts)
            outs = [out] if self.layout == "vector" else out
            reply = pack([be.ct_to_bytes(c) for c in outs])
            self.cpu_s.append(time.thread_time() - t0)
            send_bytes(reply, to=self.client)


class Client:
    """Data owner: generates the keys, encrypts, decrypts. The secret key stays here."""

    def __init__(self, server: int) -> None:
        self.server = server
        h = parse_hello(recv_bytes(server), lambda name: get_params(name).slots)
        self.params = get_params(h["params"])
        self.n_in, self.n_out, self.layout = h["n_in"], h["n_out"], h["layout"]
        self.keys = SecretKeys(self.params)
        self.cpu_s: list[float] = []          # CPU seconds per query (encrypt + decrypt)
        send_bytes(pack(list(self.keys.evaluation_keys(h["steps"]))), to=server)

    @property
    def batch_size(self) -> int:
        return self.params.slots if self.layout == "batch" else 1

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Encrypt ``x`` (one input, or a batch of up to ``batch_size``), send it, decrypt
        the reply. Returns the outputs, shape (batch, n_out); they never leave this party."""
        x = x.detach().to(torch.float64).reshape(-1 if self.layout == "batch" else 1, self.n_in)
        if x.shape[0] > self.batch_size:
            raise HEError(f"{x.shape[0]} inputs do not fit one query of {self.batch_size}")
        be, slots = self.keys.backend, self.params.slots
        t0 = time.thread_time()
        if self.layout == "vector":
            blobs = [self.keys.encrypt_slots(periodic(x[0].numpy(), pow2(self.n_in), slots))]
        else:
            blobs = [self.keys.encrypt_slots(x[:, f].numpy()) for f in range(self.n_in)]
        query = pack(blobs)
        cpu = time.thread_time() - t0
        send_bytes(query, to=self.server)
        n = 1 if self.layout == "vector" else self.n_out
        reply = recv_bytes(self.server)
        t0 = time.thread_time()
        outs = [be.ct_from_bytes(b) for b in unpack(reply, n, be.max_ct_bytes, "reply")]
        if self.layout == "vector":
            y = torch.from_numpy(self.keys.decrypt_slots(outs[0])[: self.n_out].copy())[None]
        else:
            cols = [self.keys.decrypt_slots(c)[: x.shape[0]] for c in outs]
            y = torch.from_numpy(np.stack(cols, 1).copy())
        self.cpu_s.append(cpu + time.thread_time() - t0)
        return y
