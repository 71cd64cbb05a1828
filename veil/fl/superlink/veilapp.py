"""veil secure aggregation under Flower's deployment engine (SuperLink + SuperNodes, TLS);
see run_tls.sh next to this file."""
import json
import os

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from veil.fl import tasks
from veil.fl.flower import SecureFedAvg, secagg_mod

N = 3
parts, test = tasks.partition("breast_cancer", N, alpha=0.5, seed=0)
client = tasks.client_app(parts, 30, 2, mods=[secagg_mod])
server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    s = SecureFedAvg(threshold=2, min_available_nodes=N, min_train_nodes=N)
    r = s.start(grid=grid, initial_arrays=ArrayRecord(tasks.model(30, 2).state_dict()),
                num_rounds=int(context.run_config["num-rounds"]))
    net = tasks.model(30, 2)
    net.load_state_dict(r.arrays.to_torch_state_dict())
    out = {"history": [{k: v for k, v in h.items() if isinstance(v, (int, float))}
                       for h in s.history],
           "accuracy": tasks.accuracy(net, test)}
    path = os.environ.get("VEIL_SUPERLINK_RESULT", "veil-superlink-result.json")
    with open(path, "w") as f:
        json.dump(out, f)
