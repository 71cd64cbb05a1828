"""Trusted dealer — UNSAFE unless the dealer is trusted by everyone and colludes with no one.

Threat model: the dealer sees every mask it makes, so a dealer that also saw a party's
view (or any opened value) could learn secrets. It never sees online traffic. It must be
a separate role — a thread in `veil.run`, its own process under `veil run` — and trust
in it is the price of dishonest-majority semi-honest security with cheap preprocessing.

Cost: each party shares one AES seed with the dealer, so all random parts and the derived
shares of all parties but one are generated locally; one party receives its derived
shares (one offline round per request). That party rotates with the request's number
(request k: party k mod n), so the dealer's traffic is spread over every party's link
instead of loading party 0's alone (on the emulated WAN the dealer link, not the peers',
was the bottleneck of a BERT forward). Party 0 sends the request (kind and shapes: public).
The dealer checks every request before drawing anything (veil.offline.requests): a
malformed or oversized one stops the run, naming party 0. Once the request sequence
repeats, or from the first request of a compiled graph's second run (its request plan,
veil.offline.plan), party 0 sends predicted requests ahead so the dealer works ahead of
the parties (veil.offline.lookahead: bounded, and identical at every party, so PRGs stay
in step). Speculative requests are ordinary requests to the dealer: checked the same.
With a plan store (``Config.plan_dir``, veil.offline.planstore) a graph's plan recorded
by an earlier process is followed from its first run, once every party holds the same.
The dealer keeps the keyed masks it reconstructs again and again (a model's weights)
within a memory budget (veil.offline.keycache), so a forward does not redraw them.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import OrderedDict, deque

import numpy as np
import torch

from ..comm import OFFLINE, Communicator
from ..comm.communicator import parse_obj
from ..comm.limits import MAX_ELEMENTS
from ..errors import PartyError
from ..ring import numel
from .keycache import KeyedCache, default_budget
from .lookahead import (AHEAD_BYTES, AHEAD_COUNT, AHEAD_REQUEST_BYTES, GUESS_BYTES,
                        MAX_PERIOD, Predictor, Repeat)
from .materials import BITS, BYTES, RING, Part, combine, correction, recipe, wire_dtype
from .plan import PlanBook, is_key
from .planstore import PlanStore, agree
from .prg import PRG
from .provider import COUNTERS, Provider
from .requests import checked_recipe, parse_request

STOP = "__stop__"
MAX_STORED = 4096               # graphs a run looks up in (or saves to) the plan store
log = logging.getLogger("veil.plans")


def _draw(prg: PRG, part: Part):
    if part.key is not None:               # keyed: regenerable by key (materials.py)
        prg = prg.fork(part.key)
    if part.domain == BITS:
        return prg.bits(part.shape)
    if part.domain == BYTES:                # (shaped in numpy: one torch call, not two)
        return torch.from_numpy(prg.array(numel(part.shape)).reshape(part.shape))
    if part.width <= 32:        # meaningful mod 2^width only: draw just those bytes
        words = np.int16 if wire_dtype(part) == torch.int16 else np.int32
        raw = prg.array(numel(part.shape) * np.dtype(words).itemsize).view(words)
        return torch.from_numpy(raw.astype(np.int64).reshape(part.shape))
    return prg.ring(part.shape)



def _recv_part(comm: Communicator, peer: int, part: Part):
    dtype = wire_dtype(part)
    got = comm.recv_tensor(peer, part.shape, dtype)
    # a narrow ring part (materials.py: width < 64) is sign-extended: right mod 2^width
    return got.to(torch.int64) if part.domain == RING and dtype != torch.int64 else got


class _Pending(dict):
    """A receiving party's material: random parts now, the dealer's derived parts on
    first use.

    Party 0 sends its request and goes on (drawing masks, opening e and f) while the
    dealer works; the receiving party blocks only when it touches a derived part. Replies
    to one party arrive in request order, so touching one drains every earlier one first.
    """

    def __init__(self, provider: "TrustedDealerUnsafe", derived: tuple[Part, ...], **parts):
        super().__init__(**parts)
        self._provider, self._derived, self._done = provider, derived, False

    def __missing__(self, key):
        self._provider._drain(self)
        return dict.__getitem__(self, key)

    def receive(self) -> None:
        prov = self._provider
        comm, t0 = prov._comm, time.perf_counter()
        with comm.phase(OFFLINE):
            for p in self._derived:
                dict.__setitem__(self, p.name, _recv_part(comm, prov._dealer, p))
        prov.wait_s += time.perf_counter() - t0
        self._done = True


# distinct requests remembered: every request the predictor's window can still name
KNOWN_MAX = 4 * MAX_PERIOD + AHEAD_COUNT


def _material_bytes(rec) -> int:
    """Bytes party 0 holds for a request sent ahead: its random parts (drawn when the
    request is sent) and the dealer's reply (its derived parts, in their wire dtypes)."""
    return (sum(numel(p.shape) * (8 if p.domain == RING else 1) for p in rec.randoms)
            + sum(numel(p.shape) * wire_dtype(p).itemsize for p in rec.derived))


def _request_bytes(key: str) -> int:
    """A request's size on the wire, bounded from its key (the same JSON, plus the
    ``{"kind": , "args": }`` wrapper and an emulated link's stamp)."""
    return len(key) + 32


_DICT, _JSON = object(), object()        # tags no request value can equal


def _frozen(v):
    """A hashable stand-in for a request value, built without encoding it: two values
    get equal stand-ins only if their JSON (``sort_keys``) is equal. Lists and tuples
    alike (JSON arrays both); a dict by its sorted items; anything but a plain int or
    str (bool: True == 1 in Python, not in JSON; floats, None) by its JSON text.
    Only an index into `_Known`: what is compared and sent is still the JSON."""
    t = type(v)
    if t is int or t is str:
        return v
    if t is list or t is tuple:
        return tuple([x if type(x) is int else _frozen(x) for x in v])
    if t is dict:
        return (_DICT, tuple(sorted([(k, _frozen(x)) for k, x in v.items()])))
    return (_JSON, json.dumps(v, sort_keys=True))


class _Known:
    """Everything derived from one distinct request, computed once: its JSON key (what
    look-ahead entries are compared by), its shape (mask keys left out: what the period
    predictor compares) and keys, the recipe, the bytes it asks for, and (party 0) the
    message sent for it. A training step repeats the same requests every step: this
    saves re-encoding them to JSON three times a request, and rebuilding the recipe."""

    __slots__ = ("kind", "args", "rec", "key", "shape", "plain", "names", "keys",
                 "nbytes", "nreq", "wire")

    def __init__(self, kind: str, args: dict) -> None:
        self.kind, self.args = kind, args
        self.key = json.dumps([kind, args], sort_keys=True)
        self.rec = recipe(kind, args)
        names = tuple(sorted(k for k, v in args.items() if is_key(k) and isinstance(v, int)))
        if not names:
            self.shape, self.plain = self.key, args
        else:
            self.plain = {k: v for k, v in args.items() if k not in names}
            self.shape = json.dumps([kind, self.plain, names], sort_keys=True)
        self.names, self.keys = names, tuple(args[k] for k in names)
        self.nbytes, self.nreq = _material_bytes(self.rec), _request_bytes(self.key)
        self.wire = None                   # party 0's request message, encoded on first send

    def message(self) -> bytes:
        if self.wire is None:
            self.wire = json.dumps({"kind": self.kind, "args": self.args}).encode()
        return self.wire


class TrustedDealerUnsafe(Provider):
    """Party side of the trusted dealer (see module docstring for the trust it needs)."""

    def __init__(self, comm: Communicator, dealer_rank: int, prg: PRG,
                 max_ahead_bytes: int = AHEAD_BYTES, store: PlanStore | None = None) -> None:
        self._comm, self._dealer, self._prg = comm, dealer_rank, prg
        # a party's inbox holds the replies sent ahead: keep them below what it buffers
        self._max_ahead = min(AHEAD_BYTES, max_ahead_bytes)
        self._queue: list[_Pending] = []
        self._pred = Predictor()
        # request (`_frozen`) -> its `_Known`, most recently used last
        self._known: OrderedDict[tuple, _Known] = OrderedDict()
        # request shape (mask keys left out) -> (kind, args without keys, key names, and
        # the `_Known` of that request when it has no keys: what predicting it returns)
        self._shapes: OrderedDict[str, tuple] = OrderedDict()
        # Predicted requests sent ahead (party 0) or to draw on use (others): [key,
        # recipe, party 0's pending material or None, material bytes, request bytes],
        # oldest first.
        self._ahead: deque[list] = deque()
        self._ahead_bytes = 0              # material held for them (party 0)
        self._ahead_requests = 0           # their requests' bytes (the dealer's inbox)
        self._plans = PlanBook()
        # plans kept on disk (veil.offline.planstore; Config.plan_dir): the tags looked
        # up this run, the digest of the stored plan of each, the tags saved
        self._store = store
        self._stored: dict[str, bytes] = {}
        self._saved: set[str] = set()
        self._repeat: Repeat | None = None  # the program's latest hint (`repeat`)
        self._next_key = 0                 # first mask key not yet seen (plans' base)
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.wait_s = 0.0                  # this party's time blocked on dealer replies
        self._issued = 0                   # requests whose material this party has made

    def __repr__(self) -> str:
        return f"TrustedDealerUnsafe(rank={self._comm.rank})"

    def note_key(self, key: int) -> None:
        self._next_key = max(self._next_key, int(key) + 1)

    def get(self, kind: str, **args):
        if kind == "mask":
            # keyed masks only: every party draws its own from its dealer seed forked by
            # the key; the dealer has nothing to do, and nothing to predict
            self.note_key(args["key"])
            return {p.name: _draw(self._prg, p) for p in recipe(kind, args).randoms}
        known = self._lookup(kind, args)
        rec, key = known.rec, known.key
        self._note_shape(known)
        if known.keys:  # a keyed request may name a fresh key (a fused truncation's)
            self._next_key = max(self._next_key, max(known.keys) + 1)
        self.counts["dealer_requests"] += 1
        self._plans.record(kind, args)
        if self._ahead and self._ahead[0][0] != key:
            self._mispredicted()
        if self._ahead:
            _, _, pending, nbytes, nreq = self._ahead.popleft()
            self._ahead_bytes -= nbytes
            self._ahead_requests -= nreq
            self.counts["dealer_ahead"] += 1
            out = pending if self._comm.rank == 0 else self._material(rec)
        else:
            # not predicted: party 0 waits a round trip (and the dealer's work) for it
            self.counts["dealer_waits"] += 1
            out = self._issue(known)
        self._pred.observe(known.shape, known.keys)
        self._work_ahead()
        return out

    def _note_shape(self, known: _Known) -> None:
        """Remember a request's shape (without mask keys: what the period predictor
        compares), to turn predictions back into requests; least recently seen dropped."""
        shape = known.shape
        if shape not in self._shapes:
            self._shapes[shape] = (known.kind, known.plain, known.names,
                                   None if known.names else known)
            if len(self._shapes) > KNOWN_MAX:
                self._shapes.popitem(last=False)
        else:
            self._shapes.move_to_end(shape)

    def _lookup(self, kind: str, args: dict) -> _Known:
        """What a request implies (`_Known`), worked out once per distinct request."""
        index = (kind, _frozen(args))
        known = self._known.get(index)
        if known is None:
            known = self._known[index] = _Known(kind, args)
            if len(self._known) > KNOWN_MAX:      # keyed requests (fresh keys) never
                self._known.popitem(last=False)   # repeat: keep the recent ones only
        else:
            self._known.move_to_end(index)
        return known

    # -- request plans (veil.offline.plan) ----------------------------------------------
    def begin_plan(self, tag: str) -> None:
        if self._store is not None and self._plans.unknown(tag) and tag not in self._stored \
                and len(self._stored) < MAX_STORED:
            self._load_plan(tag)
        if not self._plans.begin(tag, self._next_key) or not self._plans.active:
            return                      # a nested run, or no plan for this graph yet
        self._repeat = None
        self._follow_new_source()

    def end_plan(self, complete: bool = True) -> None:
        followed, tag = self._plans.active, self._plans.tag
        if self._plans.end():
            self._repeat = None         # (its keys were this run's)
            if followed and self._ahead:
                # predicted past the run's real end (the graph changed): nothing uses them
                self._mispredicted()
            if self._store is not None and complete and tag not in self._saved \
                    and len(self._saved) < MAX_STORED:
                self._save_plan(tag)

    def _load_plan(self, tag: str) -> None:
        """The first run of ``tag`` here: follow the stored plan if every party holds the
        same one (one round at every party: all make the same calls, SPMD)."""
        entries = self._store.load(tag)
        digest = self._store.digest(tag, entries)
        self._stored[tag] = b""
        if agree(self._comm, digest):
            self._plans.install(tag, entries)
            self._stored[tag] = digest
            self.counts["dealer_plans_loaded"] += 1
        elif digest:
            log.warning("veil: the stored request plan of %s is not used: the parties hold "
                        "different ones (or some none); this run records it again", tag[:22])

    def _save_plan(self, tag: str) -> None:
        """A graph's first run here is over: keep its plan on disk unless it is the one
        stored (a run that failed midway saves nothing: `Provider.plan`)."""
        self._saved.add(tag)
        entries = self._plans.get(tag)
        if entries is not None and self._store.digest(tag, entries) != self._stored.get(tag):
            self._store.save(tag, entries)

    # -- repeats (veil.offline.lookahead.Repeat) --------------------------------------
    def mark(self):
        return self._pred.count, self._next_key

    @property
    def _told(self) -> bool:
        """Whether predictions come from what the program said (a plan, a hint), not
        from a period guessed."""
        return self._plans.active or self._repeat is not None

    @property
    def _hinted_ahead(self) -> bool:
        """Whether a plan or an unfinished hint already predicts the next requests."""
        return self._plans.active or (self._repeat is not None and
                                      not self._repeat.done(self._pred.count))

    def predicting(self) -> bool:
        return self._hinted_ahead or (not self._told and self._pred.keys_ready)

    def repeat(self, since, until, keymap: dict) -> None:
        (c0, k0), (c1, _) = since, until
        if self._hinted_ahead or c1 <= c0 or c0 < self._pred._base:
            return                      # known already, an empty stretch, or forgotten
        self._repeat = Repeat(c0, c1 - c0, self._pred.count, self._next_key - k0, k0,
                              keymap)
        self._follow_new_source()

    def _follow_new_source(self) -> None:
        """A better source of predictions (a plan, a repeat) begins: entries already
        sent stay if it agrees with them; otherwise they are dropped."""
        for i, (key, *_rest) in enumerate(self._ahead):
            want = self._upcoming(i)
            if want is None or want.key != key:
                self._drop_ahead()
                break
        self._work_ahead()

    def counters(self) -> dict:
        return dict(self.counts)

    def _material(self, rec) -> dict:
        """This party's material for the next request in issue order (the same order at
        every party and at the dealer): random parts from the PRG shared with the dealer;
        derived parts from it too, or from the dealer when this party is the request's
        receiver (`receiver`)."""
        k = self._issued
        self._issued += 1
        out = {p.name: _draw(self._prg, p) for p in rec.randoms}
        if rec.derived and receiver(k, self._comm.world_size) == self._comm.rank:
            pending = _Pending(self, rec.derived, **out)
            self._queue.append(pending)
            return pending
        out.update({p.name: _draw(self._prg, p) for p in rec.derived})
        return out

    def _issue(self, known: _Known):
        if self._comm.rank == 0:
            with self._comm.phase(OFFLINE):
                self._comm.count_round()
                self._comm.send_bytes(self._dealer, known.message())   # send_obj's JSON
        return self._material(known.rec)

    def _upcoming(self, j: int):
        """The ``j``-th request expected after those made so far, or None: from the
        running graph's plan if there is one, else from the repeating period."""
        if self._plans.active:
            want = self._plans.predict(self._plans.pos + j)
            return None if want is None else self._lookup(*want)
        pred = self._pred
        if self._repeat is not None:
            # The program hints its repeats (a graph's first run): only they are trusted,
            # so the period is not guessed past the last repeated layer.
            got = self._repeat.predict(pred, pred.count + j)
            return None if got is None else self._request(*got)
        if not pred.keys_ready or j >= min(AHEAD_COUNT, pred.period):
            # one period ahead is enough to overlap a loop step's dealer work with the
            # step before; more would only be wasted at the end of the loop
            return None
        return self._request(pred.predict(pred.count + j), pred.predict_keys(pred.count + j))

    def _request(self, shape: str, keys: tuple | None) -> _Known | None:
        """The request of a predicted shape and keys; None if the shape left the cache
        (predicting then stops, at every party) or the keys are unknown."""
        known = self._shapes.get(shape)
        if known is None or keys is None:
            return None
        kind, plain, names, unkeyed = known
        if unkeyed is not None:
            return unkeyed
        return self._lookup(kind, {**plain, **dict(zip(names, keys))})

    def _work_ahead(self) -> None:
        """Send (party 0) or note (others) the predicted next requests, within bounds.
        A period's guesses are topped up once half of them are used, and sent as one
        batch: one write to the dealer, whose answers go out together too (a message and
        a wake-up of the dealer and of a party each, on a training step's ~15 small
        requests, cost more than the requests themselves)."""
        if self._ahead and not self._told \
                and 2 * len(self._ahead) > (self._pred.period or 0):
            return                  # (a plan's or a hint's predictions: kept full)
        with self._comm.batch():
            self._top_up()

    def _top_up(self) -> None:
        while len(self._ahead) < AHEAD_COUNT:
            nxt = self._upcoming(len(self._ahead))
            if nxt is None:
                return
            rec, key, nbytes, nreq = nxt.rec, nxt.key, nxt.nbytes, nxt.nreq
            # a plan's or a hint's predictions are seldom wrong: the whole window; a
            # period's guess past a loop's end is dropped, so less of it
            limit = self._max_ahead if self._told else min(GUESS_BYTES, self._max_ahead)
            if self._ahead_bytes + nbytes > limit \
                    or self._ahead_requests + nreq > AHEAD_REQUEST_BYTES:
                return                  # (one too big to hold is asked for when needed)
            pending = self._issue(nxt) if self._comm.rank == 0 else None
            self._ahead.append([key, rec, pending, nbytes, nreq])
            self._ahead_bytes += nbytes
            self._ahead_requests += nreq

    def _mispredicted(self) -> None:
        """The program asked for something else: drop every prediction, and predict
        nothing more until a period, the next hint or the next planned run is found."""
        self._drop_ahead()
        self._plans.broken()
        self._repeat = None

    def _drop_ahead(self) -> None:
        """Every party drops the same entries in the same order (others make theirs;
        replies are read and dropped), so PRGs stay in step."""
        self.counts["dealer_dropped"] += len(self._ahead)
        while self._ahead:
            rec = self._ahead.popleft()[1]
            if self._comm.rank != 0:
                self._material(rec)
        self._ahead_bytes = self._ahead_requests = 0
        self._pred.forget_period()

    def _drain(self, upto: _Pending) -> None:
        while self._queue:
            head = self._queue.pop(0)
            head.receive()
            if head is upto:
                return

    def close(self) -> None:
        # Requests sent ahead that the run never used: their replies still arrive, also
        # at the other parties (receivers rotate), and must be read here, or they wait
        # in a `veil run` link and the next run reads them as its own (out of step).
        self._drop_ahead()
        while self._queue:                           # replies nobody used still arrive
            self._queue.pop(0).receive()
        if self._comm.rank == 0:
            with self._comm.phase(OFFLINE):
                self._comm.send_obj(self._dealer, {"kind": STOP})


class _Checked:
    """The dealer's memory of requests it has already parsed and checked, by their exact
    bytes: a training step sends the same requests every step, and the same bytes parse
    to the same request and pass the same checks (the limits do not change within a
    run), so they are checked once. Only unkeyed requests (keyed ones name fresh mask
    keys and never repeat), at most `CHECKED_MAX` of at most `CHECKED_BYTES` each."""

    def __init__(self) -> None:
        self._seen: OrderedDict[bytes, tuple] = OrderedDict()

    def get(self, raw: bytes) -> tuple | None:
        hit = self._seen.get(raw)
        if hit is not None:
            self._seen.move_to_end(raw)
        return hit

    def add(self, raw: bytes, kind: str, args: dict, rec) -> None:
        if len(raw) > CHECKED_BYTES or any(is_key(k) for k in args):
            return
        self._seen[raw] = (kind, args, rec)
        if len(self._seen) > CHECKED_MAX:
            self._seen.popitem(last=False)


CHECKED_MAX = 1024              # distinct requests remembered by the dealer
CHECKED_BYTES = 2048            # longest request remembered (a conv's is ~150 bytes)


def receiver(k: int, parties: int) -> int:
    """The party that receives its derived shares of request ``k`` from the dealer."""
    return k % parties


def serve_dealer(comm: Communicator, prgs: list[PRG], max_elements: int = MAX_ELEMENTS,
                 cache_bytes: int | None = None) -> None:
    """The dealer's loop: answer party 0's requests until it says stop. Keyed masks it
    reconstructs repeatedly (weights) are kept within ``cache_bytes`` (veil.offline.
    keycache; default ``VEIL_DEALER_CACHE_MB``)."""
    sender = comm.peer_name(0)
    cache = KeyedCache(default_budget() if cache_bytes is None else cache_bytes)
    checked = _Checked()
    # In a batch: answers to requests that arrived together go out together (one write
    # per party once the next request is not there yet; Communicator.batch).
    with comm.phase(OFFLINE), comm.batch():
        for k in itertools.count():
            raw = bytes(comm.recv_bytes(0))
            known = checked.get(raw)
            if known is None:
                req = parse_obj(raw, sender)
                if req == {"kind": STOP}:
                    return
                kind, args = parse_request(req, max_elements, sender)
                rec = checked_recipe(kind, args, max_elements, sender, len(prgs))
                checked.add(raw, kind, args, rec)
            else:
                kind, args, rec = known
            # (fresh draws and derived values are the loop's own: summed in place)
            shares = [{p.name: _draw(prg, p) for p in rec.randoms} for prg in prgs]
            plain = {p.name: combine(p.domain, [s[p.name] for s in shares], owned=True)
                     for p in rec.randoms}
            cache.tick()
            for p in rec.keyed:
                # read-only: derive() makes new tensors. A label may name one mask at
                # several shapes of one element count (a truncation mask, reshaped:
                # materials.trunc_label): the kept tensor is read at this part's shape.
                # A mask opened to one party alone sums every other party's draw.
                plain[p.name] = cache.plain(
                    f"{p.domain}|{p.key}|{p.skip}",
                    lambda p=p: combine(p.domain, [_draw(prg, p) for i, prg in
                                                   enumerate(prgs) if i != p.skip], owned=True)
                ).reshape(p.shape)
            try:
                derived = rec.derive(plain)
            except Exception:                     # noqa: BLE001 - e.g. shapes that do not fit
                raise PartyError(sender, f"sent a dealer request whose shapes do not fit "
                                         f"together (kind {kind!r})") from None
            to = receiver(k, len(prgs))
            others = [{p.name: _draw(prg, p) for p in rec.derived}
                      for i, prg in enumerate(prgs) if i != to]
            comm.count_round()
            # a derived value may be written over unless a (registered) recipe returned
            # one of its inputs or a view of one (kept masks must stay intact)
            inputs = {t.untyped_storage().data_ptr() for t in plain.values()}
            for p in rec.derived:
                value = derived[p.name]
                corr = correction(p.domain, value, [o[p.name] for o in others],
                                  owned=value.untyped_storage().data_ptr() not in inputs)
                dtype = wire_dtype(p)                         # narrow parts: low bits
                comm.send_tensor(to, corr if corr.dtype == dtype else corr.to(dtype))
