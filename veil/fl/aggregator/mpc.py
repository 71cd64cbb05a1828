"""Aggregator MPC: the clients' side (share and seal) and the servers' side (open the
sealed shares, sum, add noise inside MPC, reveal the noisy sum).

Client ``c`` encodes its clipped update at veil's fixed point (``Config.frac_bits``),
splits it into ``k`` additive shares of Z_2^64 (k-1 uniform from AES-CTR keyed by
``os.urandom``, the last the difference) and encrypts share j for aggregator j
(X25519 + HKDF + AES-GCM, the associated data naming client, aggregator and round), so
the Flower server that relays the messages learns nothing. Aggregator j adds up its
shares: that is its semi2k share of the sum, with no communication. Inside
``veil.run(parties=k, protocol="semi2k")`` each aggregator then inputs its own Gaussian
noise of std ``noise_std`` as a secret (``veil.tensor(..., owner=j)``); the shares of
the sum and of all the noises are added, and only ``sum + Σ_j noise_j`` is revealed.

Threat model: semi-honest aggregators, no two of which collude (semi2k's model, plus
its trusted dealer — unused here since only additions and inputs are computed). Each
aggregator's noise alone has std ``noise_std``, so the DP guarantee of one round holds
as long as *one* aggregator is honest; the total noise is ``sqrt(k) * noise_std``, the
price of not trusting any single aggregator with the noise.
"""

from __future__ import annotations

import hashlib
import os

import torch

from ...offline.prg import PRG, SEED_BYTES
from ...config import Config
from ...dp import gaussian
from ..secagg import keys

_LABEL = b"aggregator-share"


class AggregatorKeys:
    """An aggregation server's X25519 key pair (its public half goes to the clients)."""

    def __init__(self):
        self._kp = keys.KeyPair()
        self.public = self._kp.public

    def __repr__(self) -> str:
        return f"AggregatorKeys(public={self.public.hex()[:16]}…)"

    def open(self, sealed: dict, index: int, round_id: bytes, vector_len: int) -> torch.Tensor:
        """Decrypt this aggregator's share from one client's sealed message."""
        epk, blob = sealed["ephemeral"], sealed["shares"][index]
        key = self._kp.agree(epk, _LABEL + b"|" + round_id, 32)
        raw = keys.decrypt(key, blob, _aad(sealed["client"], index, round_id))
        if len(raw) != 8 * vector_len:
            raise ValueError(f"client {sealed['client']}: share has {len(raw) // 8} values, "
                             f"expected {vector_len}")
        return torch.frombuffer(bytearray(raw), dtype=torch.int64).clone()


class ClientSharer:
    """Client side: additive shares of an update, each sealed to one aggregator."""

    def __init__(self, aggregator_publics: list[bytes], round_id: bytes = b"\0" * 16,
                 config: Config | None = None, bound: float = 2.0 ** 20):
        if not 2 <= len(aggregator_publics) <= 5:
            raise ValueError("aggregator MPC needs 2 to 5 aggregation servers")
        self.publics, self.round_id = list(aggregator_publics), round_id
        self.frac = (config or Config()).frac_bits
        self.bound = bound

    def seal(self, update: torch.Tensor, client_id: int) -> dict:
        x = torch.as_tensor(update, dtype=torch.float64).flatten()
        if not bool(torch.isfinite(x).all()):
            raise ValueError("update contains NaN or inf: refusing to share it")
        if x.numel() and float(x.abs().max()) > self.bound:
            raise ValueError(f"update exceeds |x| <= {self.bound:g}: clip it first")
        enc = torch.round(x * 2.0 ** self.frac).to(torch.int64)
        k = len(self.publics)
        prg = PRG(os.urandom(SEED_BYTES))
        shares = [prg.ring((x.numel(),)) for _ in range(k - 1)]
        last = enc.clone()
        for s in shares:
            last -= s                                   # wraps mod 2^64
        shares.append(last)
        eph = keys.KeyPair()                            # fresh per message: forward secrecy
        out = []
        for j, (pub, s) in enumerate(zip(self.publics, shares)):
            key = eph.agree(pub, _LABEL + b"|" + self.round_id, 32)
            out.append(keys.encrypt(key, s.numpy().tobytes(), _aad(client_id, j, self.round_id)))
        return {"client": int(client_id), "ephemeral": eph.public, "shares": out}


def _aad(client: int, index: int, round_id: bytes) -> bytes:
    return b"|".join([round_id, str(client).encode(), str(index).encode()])


def aggregate(servers: list[AggregatorKeys | None], sealed: list[dict], *, noise_std: float,
              round_id: bytes = b"\0" * 16, seed: int | None = None,
              vector_len: int | None = None) -> torch.Tensor:
    """Run the aggregators as veil parties: open, sum, add noise in MPC, reveal. Returns
    the noisy sum (float64).

    In one process (threads) ``servers`` holds every aggregator's keys. Under the ``veil
    run`` launcher (one OS process per aggregator, TLS between them; see
    :mod:`.serve`) it holds only this process's keys at its rank, ``None`` elsewhere, and
    ``sealed`` only needs this aggregator's share of each message. ``seed`` fixes veil's
    randomness for tests; the DP noise always comes from os.urandom.
    """
    import veil
    if not sealed:
        raise ValueError("no client shares to aggregate")
    n = vector_len if vector_len is not None else _vector_len(sealed[0])
    frac = Config().frac_bits
    digest = _clients_digest(sealed, round_id)

    def party():
        j = veil.rank()
        # The aggregators must sum the same clients' shares, or the result is garbage:
        # compare digests of the client lists (public to both) — reveals only equal/not.
        mine = veil.tensor(digest if j == 0 else None, owner=0)
        for p in range(1, len(servers)):
            if bool((veil.tensor(digest if j == p else None, owner=p) - mine)
                    .reveal().abs().max() > 0):
                raise ValueError(f"aggregator {p} holds shares of other clients than "
                                 "aggregator 0: refusing to reveal the sum")
        local = torch.zeros(n, dtype=torch.int64)
        for msg in sealed:
            local += servers[j].open(msg, j, round_id, n)
        # Our semi2k share of the sum: the clients' additive shares add up to it.
        total = veil.SecretTensor(local, dtype=torch.float32, frac=frac)
        for p in range(len(servers)):
            noise = gaussian(n, noise_std).float() if j == p else None
            total = total + veil.tensor(noise, owner=p)
        # Reveals the noisy sum only (DP-protected under one honest aggregator).
        return total.reveal()

    out = veil.run(party, parties=len(servers), protocol="semi2k", seed=seed)
    mine = [o for o in out if o is not None]       # networked: only this party's result
    return mine[0].double()


def _clients_digest(sealed: list[dict], round_id: bytes) -> torch.Tensor:
    ids = sorted(int(m["client"]) for m in sealed)
    h = hashlib.sha256(round_id + b"".join(i.to_bytes(8, "little", signed=True) for i in ids))
    return torch.tensor(list(h.digest()[:8]), dtype=torch.float32)   # 8 bytes, exact


def _vector_len(msg: dict) -> int:
    # ciphertext = 12-byte nonce + payload + 16-byte tag; payload = 8 bytes per value
    return (len(msg["shares"][0]) - keys.NONCE_BYTES - 16) // 8
