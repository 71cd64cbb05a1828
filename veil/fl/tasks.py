"""Ready-made federated tasks on scikit-learn data: non-IID partitions, a softmax
regression model, and a Flower ``ClientApp`` that trains it locally.

Used by the benchmark, the example and the tests; also a template for a real app (the
``train`` handler is ordinary Flower code — secure aggregation is only the mod).

>>> parts, test = partition("breast_cancer", num_clients=4, alpha=0.5, seed=0)
>>> len(parts), sum(len(y) for _, y in parts) + len(test[1])
(4, 569)
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp


def load(name: str):
    """Features (scaled with constants every client knows) and labels."""
    from sklearn import datasets
    if name == "digits":
        x, y = datasets.load_digits(return_X_y=True)
        x = x / 16.0                                  # public pixel range
    elif name == "breast_cancer":
        x, y = datasets.load_breast_cancer(return_X_y=True)
        # Standardised with the whole dataset's mean/std, standing in for reference
        # ranges the hospitals agree on beforehand (no client's statistics are shared).
        x = (x - x.mean(0)) / x.std(0)
    else:
        raise ValueError(f"unknown dataset {name!r}: use 'digits' or 'breast_cancer'")
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def partition(name: str, num_clients: int, alpha: float = 0.5, seed: int = 0,
              test_fraction: float = 0.2, min_size: int = 2):
    """Non-IID split: per class, client shares drawn from Dirichlet(alpha) (Hsu et al. 2019).

    Returns (list of (x, y) per client, (x_test, y_test)); every client gets at least
    ``min_size`` training rows (a client with none could not train).
    """
    x, y = load(name)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    n_test = int(len(y) * test_fraction)
    te, tr = perm[:n_test], perm[n_test:]
    classes = np.unique(y.numpy())
    for _ in range(100):
        idx = [[] for _ in range(num_clients)]
        for c in classes:
            rows = tr[y.numpy()[tr] == c]
            rng.shuffle(rows)
            p = rng.dirichlet([alpha] * num_clients)
            cuts = (np.cumsum(p) * len(rows)).astype(int)[:-1]
            for k, part in enumerate(np.split(rows, cuts)):
                idx[k].extend(part.tolist())
        if min(len(i) for i in idx) >= min_size:
            break
    else:
        raise ValueError("could not give every client data; raise alpha or lower clients")
    parts = [(x[i], y[i]) for i in map(np.array, idx)]
    return parts, (x[te], y[te])


def model(num_features: int, num_classes: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(num_features, num_classes)


def accuracy(net: torch.nn.Module, data) -> float:
    x, y = data
    with torch.no_grad():
        return float((net(x).argmax(1) == y).double().mean())


def local_train(net, data, epochs: int, lr: float, batch: int, seed: int) -> int:
    """Plain local SGD on this client's rows; returns the number of examples.

    The update is written out (``p -= lr * grad``) rather than using torch.optim, whose
    first use imports torch._dynamo (seconds per fresh Ray worker)."""
    x, y = data
    g = torch.Generator().manual_seed(seed)
    params = list(net.parameters())
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch):
            b = perm[i:i + batch]
            loss = torch.nn.functional.cross_entropy(net(x[b]), y[b])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, gr in zip(params, grads):
                    p -= lr * gr
    return len(y)


def client_app(parts, num_features: int, num_classes: int, *, epochs: int = 1,
               lr: float = 0.1, batch: int = 16, mods=(), fail=None,
               dp_sgd: dict | None = None) -> ClientApp:
    """A ClientApp whose node ``k`` (1-based ``node_id``, or ``partition-id`` in its node
    config under Flower's simulation) trains on ``parts[k]``. ``fail(node, round)``
    True makes that node's training raise (a client crashing mid-round).

    ``dp_sgd=dict(noise_multiplier=..., max_grad_norm=..., delta=...)`` trains with
    Opacus DP-SGD (sample-level DP, :mod:`veil.dp.dpsgd`); the node keeps its step count
    in its Context across rounds and reports its cumulative ε as ``dp-sgd-epsilon``."""
    app = ClientApp(mods=list(mods))

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        k = int(context.node_config.get("partition-id", context.node_id - 1))
        rnd = int(msg.content["config"].get("server-round", 0))
        if fail is not None and fail(context.node_id, rnd):
            raise RuntimeError("simulated client failure")
        net = model(num_features, num_classes)
        net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        metrics = {}
        if dp_sgd is None:
            n = local_train(net, parts[k], epochs, lr, batch, seed=1000 * rnd + k)
        else:
            from flwr.app import ConfigRecord
            from ..dp.dpsgd import train_dp_sgd
            st = context.state.config_records.get("veil.dpsgd", {})
            prior = int(st.get("steps", 0))
            r = train_dp_sgd(net, parts[k], epochs=epochs, lr=lr, batch=batch,
                             seed=1000 * rnd + k, prior_steps=prior, **dp_sgd)
            context.state.config_records["veil.dpsgd"] = ConfigRecord({"steps": prior + r.steps})
            n, metrics["dp-sgd-epsilon"] = r.examples, r.epsilon
        return Message(RecordDict({"arrays": ArrayRecord(net.state_dict()),
                                   "metrics": MetricRecord({"num-examples": n, **metrics})}),
                       reply_to=msg)

    return app
