"""Request plans: a compiled graph asks the dealer for the same material on every run.

A captured model's forward (or a decoder's one-token step) makes the same sequence of
dealer requests each time it runs: the shapes are fixed by the graph. What changes from
run to run are the *keys* of keyed masks (veil/offline/materials.py): an activation
masked in run k gets a fresh key, while a weight opened once keeps its key. So a plan
stores each request with every key written either *absolute* (allocated before the run
began: a weight's) or *relative* to the first key the run could allocate (its own), and
the next run of the same graph turns the plan back into concrete requests by adding its
own first key.

The executor brackets a run with `PlanBook.begin(tag)` / `PlanBook.end()` (through
`Provider.plan`); ``tag`` names the graph (a hash of its public JSON), so every party
computes the same tag and, having seen the same public request sequence, holds the
same plans: prediction from a plan needs no message, exactly as the period predictor
(veil.offline.lookahead). A plan is public (kinds and shapes) and only ever a
prediction: a run that asks for something else costs the dropped look-ahead, never a
wrong result, and the dealer validates every request as before.

Bounds: at most ``MAX_PLAN_REQUESTS`` requests per plan (a longer run is not recorded),
``MAX_PLANS`` plans and ``MAX_TOTAL_REQUESTS`` requests in all (least recently used
plans dropped first): a few tens of MB at worst.

Plans live as long as the run's provider. With ``Config(plan_dir=...)`` they are also
kept on disk (veil.offline.planstore) and, once every party holds the same one, given
to `PlanBook.install` before a later process's first run of the graph.

>>> book = PlanBook()
>>> book.begin("g", next_key=10), book.predict(0)     # first run: nothing known yet
(True, None)
>>> book.record("beaver_keyed", {"op": "mul", "key_a": 10, "key_b": 3})
>>> book.end()
True
>>> _ = book.begin("g", next_key=25)                  # next run: its keys start at 25
>>> book.predict(0)                                   # key_b (a weight's) is kept
('beaver_keyed', {'op': 'mul', 'key_a': 25, 'key_b': 3})
"""

from __future__ import annotations

from collections import OrderedDict

MAX_PLAN_REQUESTS = 1 << 16    # one plan: a GPT-2 step is ~1,800 requests, a BERT-base ~1,700
MAX_PLANS = 32                 # distinct graphs remembered (prefill, step, several models)
MAX_TOTAL_REQUESTS = 1 << 17   # requests stored over all plans (~0.5 KB each)


def is_key(name: str) -> bool:
    """Whether a request argument names a keyed mask (the request checker's rule)."""
    return name == "key" or name.startswith("key_")


def template(kind: str, args: dict, base: int) -> tuple:
    """A request as a plan stores it: keys >= ``base`` (allocated during this run) become
    ``("rel", key - base)``, older keys stay ``("abs", key)``."""
    keyed = tuple(sorted((k, ("rel", v - base) if v >= base else ("abs", v))
                         for k, v in args.items() if is_key(k) and isinstance(v, int)))
    plain = {k: v for k, v in args.items() if not (is_key(k) and isinstance(v, int))}
    return kind, plain, keyed


def materialize(entry: tuple, base: int) -> tuple[str, dict]:
    """(kind, args) of a stored request for a run whose first key is ``base``."""
    kind, plain, keyed = entry
    if not keyed:
        return kind, plain
    args = dict(plain)
    for name, (mode, v) in keyed:
        args[name] = base + v if mode == "rel" else v
    return kind, args


class PlanBook:
    """The plans of the graphs run so far, the run being recorded, and the one replayed.

    Runs nest (a decoder step runs a graph): only the outermost is planned.
    """

    def __init__(self) -> None:
        self._plans: OrderedDict[str, list] = OrderedDict()
        self._total = 0                    # requests stored over all plans
        self._depth = 0
        self._tag: str | None = None
        self._rec: list | None = None     # this run's requests (None: too long, dropped)
        self._replay: list | None = None  # the plan being followed (None: none, or broken)
        self._base = 0
        self.pos = 0                       # requests made since the run began

    @property
    def tag(self) -> str | None:
        """The graph of the outermost run now open (None between runs)."""
        return self._tag

    def unknown(self, tag: str) -> bool:
        """Whether a `begin` of ``tag`` now would open an outermost run with no plan."""
        return self._depth == 0 and tag not in self._plans

    def get(self, tag: str) -> list | None:
        """The plan kept for ``tag`` (a list of `template` entries), or None."""
        return self._plans.get(tag)

    def install(self, tag: str, entries: list) -> None:
        """Keep ``entries`` (a plan from elsewhere: a file every party holds, validated)
        as the plan of ``tag``, within the same bounds as a recorded one."""
        if len(entries) > MAX_PLAN_REQUESTS:
            return
        self._total -= len(self._plans.pop(tag, ()))
        self._plans[tag] = entries
        self._total += len(entries)
        self._trim()

    def _trim(self) -> None:
        while len(self._plans) > MAX_PLANS or self._total > MAX_TOTAL_REQUESTS:
            self._total -= len(self._plans.popitem(last=False)[1])

    @property
    def active(self) -> bool:
        """Whether a plan is being followed (and has not been contradicted)."""
        return self._replay is not None

    def begin(self, tag: str, next_key: int) -> bool:
        """Open a run of graph ``tag`` whose own mask keys start at ``next_key``; False
        for a run nested in another (it is part of the outer run's plan)."""
        self._depth += 1
        if self._depth > 1:
            return False
        self._tag, self._base, self.pos = tag, next_key, 0
        self._rec = []
        self._replay = self._plans.get(tag)
        if self._replay is not None:
            self._plans.move_to_end(tag)
        return True

    def record(self, kind: str, args: dict) -> None:
        """Note the run's next request (call for every request while a run is open)."""
        if self._depth == 0:
            return
        self.pos += 1
        if self._rec is not None:
            if len(self._rec) >= MAX_PLAN_REQUESTS:
                self._rec = None
            else:
                self._rec.append(template(kind, args, self._base))

    def predict(self, i: int) -> tuple[str, dict] | None:
        """The request the plan expects at run position ``i`` (None: past its end)."""
        if self._replay is None or i >= len(self._replay):
            return None
        return materialize(self._replay[i], self._base)

    def broken(self) -> None:
        """The run left its plan: predict nothing more until the next run."""
        self._replay = None

    def end(self) -> bool:
        """Close the run (False: a nested one); its requests become the tag's plan."""
        if self._depth == 0:
            raise RuntimeError("PlanBook.end without begin (a bug in the executor)")
        self._depth -= 1
        if self._depth > 0:
            return False
        self._total -= len(self._plans.pop(self._tag, ()))
        if self._rec is not None:             # the latest run is the plan for the next
            self._plans[self._tag] = self._rec
            self._total += len(self._rec)
            self._trim()
        self._tag = self._rec = self._replay = None
        self.pos = 0
        return True

    def __len__(self) -> int:
        return len(self._plans)
