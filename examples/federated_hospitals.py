"""Hospitals train a diagnosis model together; no hospital's patients leave it, the
server never sees one hospital's update, and the model is differentially private.

Each of N hospitals holds its own breast-cancer biopsies (sklearn's breast_cancer, split
non-IID across hospitals with Dirichlet α = 0.5). Every round the hospitals (all of them
by default, or a Poisson sample at rate q) train locally; veil's secure aggregation lets
the Flower server learn only the *sum* of their clipped updates, plus discrete Gaussian
noise that the hospitals added in shares (nobody knows the total noise; the distributed
discrete Gaussian of Kairouz et al. 2021, so the released sum is an exact integer
mechanism). The accountant reports the client-level (ε, δ) after each round and stops
before the budget.

    python examples/federated_hospitals.py                  # Flower message path, one process
    python examples/federated_hospitals.py --ray            # Flower's Ray simulation engine
    python examples/federated_hospitals.py --hospitals 20 --epsilon 3

Writes outputs/federated_hospitals.png (test accuracy and ε per round) in --out.
Needs the ``fl`` extra (flwr, dp-accounting, matplotlib).
"""

from __future__ import annotations

import argparse
import os
import time

from flwr.app import ArrayRecord

from veil.fl import tasks
from veil.fl.flower import DPConfig, LocalGrid, SecureFedAvg, secagg_mod


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hospitals", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-epochs", type=int, default=5)
    ap.add_argument("--epsilon", type=float, default=8.0, help="privacy budget ε")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--sample-rate", type=float, default=1.0)
    ap.add_argument("--clip", type=float, default=0.5)
    ap.add_argument("--mechanism", default="ddg", choices=["ddg", "gaussian"],
                    help="noise shares: discrete Gaussian (default) or float Gaussian")
    ap.add_argument("--ray", action="store_true", help="run on Flower's Ray simulation engine")
    ap.add_argument("--out", default="outputs")
    args = ap.parse_args(argv)
    t0 = time.time()

    parts, test = tasks.partition("breast_cancer", args.hospitals, alpha=0.5, seed=0)
    print(f"{args.hospitals} hospitals, patients per hospital: "
          f"{sorted(len(y) for _, y in parts)}; {len(test[1])} held-out test patients")
    expected = args.sample_rate * args.hospitals
    dp = DPConfig(clip_norm=args.clip, sample_rate=args.sample_rate,
                  min_clients=max(2, int(expected) // 2), target_epsilon=args.epsilon,
                  delta=args.delta, budget=args.epsilon, mechanism=args.mechanism)
    curve, eps = [], []

    def evaluate(rnd, arrays):
        net = tasks.model(30, 2)
        net.load_state_dict(arrays.to_torch_state_dict())
        curve.append(tasks.accuracy(net, test))

    def run(grid):
        strategy = SecureFedAvg(threshold=0.5, min_available_nodes=args.hospitals, dp=dp)
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(tasks.model(30, 2).state_dict()),
                                num_rounds=args.rounds, evaluate_fn=evaluate)
        for h in strategy.history:
            eps.append(h["epsilon"])
            note = h.get("skipped", f"{h.get('clients', 0)} hospitals in the sum")
            print(f"round {h['round']:2d}: accuracy {curve[h['round']]:.3f}  "
                  f"ε = {h['epsilon']:.2f}  ({note[:60]})")
        print(f"noise multiplier z = {strategy.noise_multiplier:.2f}")
        return result

    client = tasks.client_app(parts, 30, 2, epochs=args.local_epochs, mods=[secagg_mod])
    if args.ray:
        from flwr.serverapp import ServerApp
        from flwr.simulation import run_simulation
        server = ServerApp()

        @server.main()
        def _main(grid, context):
            run(grid)

        run_simulation(server, client, num_supernodes=args.hospitals, backend_config={
            "client_resources": {"num_cpus": 1}, "init_args": {"include_dashboard": False}})
    else:
        run(LocalGrid(client, args.hospitals))

    print(f"final test accuracy {curve[-1]:.3f} with client-level (ε = {eps[-1]:.2f}, "
          f"δ = {args.delta:g})-DP; {time.time() - t0:.1f} s")
    os.makedirs(args.out, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(len(curve)), curve, label="test accuracy")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax2 = ax.twinx()
    ax2.plot(range(1, len(eps) + 1), eps, color="tab:red", label="ε")
    ax2.set_ylabel("ε (δ = %g)" % args.delta)
    ax.set_title(f"{args.hospitals} hospitals, secure aggregation + DP")
    fig.tight_layout()
    path = os.path.join(args.out, "federated_hospitals.png")
    fig.savefig(path, dpi=100)
    print(f"plot saved to {path}")


if __name__ == "__main__":
    main()
