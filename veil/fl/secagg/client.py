"""The client side of one secure-aggregation round (Bonawitz et al., CCS 2017, SecAgg).

Stages, each one message to and one reply from the server:

1. ``advertise``: fresh X25519 key pairs ``c`` (to encrypt shares) and ``s`` (to agree
   pairwise masks); the public halves go to the server.
2. ``share_keys(roster)``: the public keys of this client's neighbourhood (everyone in
   SecAgg; its ``k`` graph neighbours under SecAgg+, :mod:`.graph`). A fresh 16-byte
   self-mask seed ``b`` and the ``s`` private key are Shamir-shared (threshold t) among
   the roster; each share is encrypted for its addressee (AES-GCM) and sent via the server.
3. ``masked_input(x, inbox)``: ``y = enc(x) + PRG(b) + sum_v ±PRG(s_uv) mod 2^64`` over the
   clients ``v`` whose shares arrived (those still in the round); ``+`` when this client's
   id is smaller. The pairwise masks cancel in the sum; ``PRG(b)`` hides ``y`` even from a
   server that later learns ``s_uv`` for a dropped peer.
4. ``unmask(survivors, total)``: for each survivor (in its roster) this client reveals its
   share of ``b``; for each peer that dropped before sending ``y`` it reveals its share of
   the ``s`` key. Never both for one peer (the sets are disjoint), and only if the sum
   holds at least ``max(t, min_survivors)`` inputs (``total``, as the server states it).

Threat model: semi-honest (honest-but-curious) server and clients, any coalition of
fewer than t clients, possibly with the server, learns nothing about other clients'
updates beyond their sum. Omitted from the paper: signatures on keys and the consistency
check round, which defend against a server that lies about who survived; without them
an actively malicious server could unmask one client.
"""

from __future__ import annotations

import torch

from . import keys, shamir
from .config import InsufficientClientsError, SecAggConfig

SHARE_KEY = b"share"
MASK_KEY = b"mask"


class SecAggClient:
    """One client's state for one round; every method may be called once, in order."""

    def __init__(self, node_id: int, config: SecAggConfig, round_id: bytes):
        self.node_id, self.config, self.round_id = int(node_id), config, bytes(round_id)
        self._c, self._s = keys.KeyPair(), keys.KeyPair()
        self._stage = "advertise"

    def __repr__(self) -> str:
        return f"SecAggClient(node={self.node_id}, stage={self._stage})"

    def _enter(self, stage: str, nxt: str) -> None:
        if self._stage != stage:
            raise RuntimeError(f"secure aggregation: '{stage}' called at stage "
                               f"'{self._stage}' (each stage runs once, in order)")
        self._stage = nxt

    # -- stage 1 ------------------------------------------------------------------------
    def advertise(self) -> dict:
        self._enter("advertise", "share_keys")
        return {"c_pk": self._c.public, "s_pk": self._s.public}

    # -- stage 2 ------------------------------------------------------------------------
    def share_keys(self, roster: dict[int, tuple[bytes, bytes]]) -> dict[int, bytes]:
        """``roster``: node id -> (c_pk, s_pk) of every client that advertised."""
        self._enter("share_keys", "masked_input")
        roster = _validate_roster(roster)
        me = roster.get(self.node_id)
        if me != (self._c.public, self._s.public):
            raise ValueError("the roster does not list this client's own public keys")
        self._roster = roster
        self._ids = sorted(roster)
        self._t = self.config.t_for(len(roster))
        if len(roster) < self._t:
            raise InsufficientClientsError("share_keys", len(roster), self._t)
        self._b = keys.fresh_seed()
        b_sh = shamir.split(self._b, self._t, len(self._ids))
        s_sh = shamir.split(self._s.private_bytes(), self._t, len(self._ids))
        out = {}
        for i, v in enumerate(self._ids):
            payload = b_sh[i][1] + s_sh[i][1]
            if v == self.node_id:
                self._own_share = payload
                continue
            key = self._c.agree(roster[v][0], keys.pair_label(SHARE_KEY, self.round_id,
                                                              self.node_id, v), 32)
            out[v] = keys.encrypt(key, payload, self._aad(self.node_id, v))
        return out

    def _aad(self, sender: int, to: int) -> bytes:
        return b"|".join([self.round_id, str(sender).encode(), str(to).encode()])

    # -- stage 3 ------------------------------------------------------------------------
    def masked_input(self, x: torch.Tensor, inbox: dict[int, bytes]) -> torch.Tensor:
        """``x``: this client's flat float update; ``inbox``: sender id -> encrypted share."""
        self._enter("masked_input", "unmask")
        x = torch.as_tensor(x)
        if x.dim() != 1 or x.numel() != self.config.vector_len:
            raise ValueError(f"update has shape {tuple(x.shape)}; secure aggregation "
                             f"expects a flat vector of {self.config.vector_len} values")
        enc = self.config.fixed_point.encode(x)     # refuses NaN/inf and out-of-bound values
        if not isinstance(inbox, dict) or not set(inbox) <= set(self._roster) - {self.node_id}:
            raise ValueError("inbox holds shares from clients outside the roster")
        self._shares = {self.node_id: self._own_share}
        for u, blob in inbox.items():
            key = self._c.agree(self._roster[u][0],
                                keys.pair_label(SHARE_KEY, self.round_id, u, self.node_id), 32)
            payload = keys.decrypt(key, blob, self._aad(u, self.node_id))
            if len(payload) != 2 * shamir.SHARE_BYTES:
                raise ValueError(f"share from client {u} has the wrong length")
            self._shares[u] = payload
        self._u2 = set(self._shares)
        if len(self._u2) < self._t:
            raise InsufficientClientsError("masked_input", len(self._u2), self._t)
        y = enc + keys.mask(self._b, x.numel())
        for v in self._u2 - {self.node_id}:
            seed = self._s.agree(self._roster[v][1],
                                 keys.pair_label(MASK_KEY, self.round_id, self.node_id, v), 16)
            m = keys.mask(seed, x.numel())
            y = y + m if self.node_id < v else y - m
        return y

    # -- stage 4 ------------------------------------------------------------------------
    def unmask(self, survivors, total: int | None = None) -> dict[str, dict[int, bytes]]:
        """Shares of ``b`` for each survivor, of the mask key for each dropped peer.

        ``survivors``: the survivors among this client's roster; ``total``: how many
        masked inputs the sum holds in all (default ``len(survivors)``, exact in the
        complete graph; under SecAgg+ the server's statement, trusted as semi-honest)."""
        self._enter("unmask", "done")
        survivors = set(int(v) for v in survivors)
        if not survivors <= self._u2 or self.node_id not in survivors:
            raise ValueError("survivor list names clients outside this round, or omits "
                             "this client: refusing to reveal shares")
        total = len(survivors) if total is None else int(total)
        need = self.config.need_inputs(self._t)
        if total < max(need, len(survivors)):
            raise InsufficientClientsError("unmask", total, need)
        n = shamir.SHARE_BYTES
        return {"b": {u: self._shares[u][:n] for u in survivors},
                "s": {u: self._shares[u][n:] for u in self._u2 - survivors}}

    # -- persistence between messages (Flower keeps a node's state in its Context) ------
    def to_state(self) -> dict:
        """This client's state as plain values (int, bytes, lists) — secret material
        included, so it must stay on this node (Flower's Context.state does)."""
        st = {"node_id": self.node_id, "round_id": self.round_id, "stage": self._stage,
              "c_sk": self._c.private_bytes(), "s_sk": self._s.private_bytes()}
        if hasattr(self, "_roster"):
            ids = sorted(self._roster)
            st.update(ids=ids, c_pks=[self._roster[v][0] for v in ids],
                      s_pks=[self._roster[v][1] for v in ids], t=self._t, b=self._b,
                      own_share=self._own_share)
        if hasattr(self, "_shares"):
            sh = sorted(self._shares)
            st.update(share_ids=sh, shares=[self._shares[u] for u in sh])
        return st

    @classmethod
    def from_state(cls, st: dict, config: SecAggConfig) -> "SecAggClient":
        self = cls.__new__(cls)
        self.node_id, self.config, self.round_id = int(st["node_id"]), config, st["round_id"]
        self._c, self._s = keys.KeyPair(st["c_sk"]), keys.KeyPair(st["s_sk"])
        self._stage = st["stage"]
        if "ids" in st:
            self._roster = {int(v): (c, s) for v, c, s in zip(st["ids"], st["c_pks"], st["s_pks"])}
            self._ids = sorted(self._roster)
            self._t, self._b, self._own_share = int(st["t"]), st["b"], st["own_share"]
        if "share_ids" in st:
            self._shares = {int(u): p for u, p in zip(st["share_ids"], st["shares"])}
            self._u2 = set(self._shares)
        return self


def _validate_roster(roster) -> dict[int, tuple[bytes, bytes]]:
    if not isinstance(roster, dict):
        raise ValueError("roster must map node ids to (c_pk, s_pk)")
    out, seen = {}, set()
    for v, pair in roster.items():
        c_pk, s_pk = pair
        for k in (c_pk, s_pk):
            if not isinstance(k, bytes) or len(k) != keys.PUBLIC_KEY_BYTES:
                raise ValueError(f"client {v}: public keys must be 32-byte X25519 keys")
            if k in seen:
                raise ValueError("two roster entries share a public key")
            seen.add(k)
        out[int(v)] = (c_pk, s_pk)
    return out
