"""End to end on Flower's simulation engine (Ray): a ServerApp using SecureFedAvg and a
ClientApp with secagg_mod. One small run (Ray start-up dominates its time)."""

import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

from flwr.app import ArrayRecord  # noqa: E402
from flwr.serverapp import ServerApp  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

from veil.fl import tasks  # noqa: E402
from veil.fl.flower import SecureFedAvg, secagg_mod  # noqa: E402


def test_secure_fedavg_on_ray_simulation():
    parts, test = tasks.partition("breast_cancer", 4, alpha=0.5, seed=0)
    out = {}
    server = ServerApp()

    @server.main()
    def main(grid, context):
        s = SecureFedAvg(threshold=3, min_available_nodes=4)
        r = s.start(grid=grid, initial_arrays=ArrayRecord(tasks.model(30, 2).state_dict()),
                    num_rounds=2)
        out["history"], out["arrays"] = s.history, r.arrays

    client = tasks.client_app(parts, 30, 2, mods=[secagg_mod])
    run_simulation(server, client, num_supernodes=4, backend_config={
        "client_resources": {"num_cpus": 1},
        "init_args": {"num_cpus": 1, "include_dashboard": False}})
    assert [h["clients"] for h in out["history"]] == [4, 4]
    net = tasks.model(30, 2)
    net.load_state_dict(out["arrays"].to_torch_state_dict())
    # 2 rounds of 1 local epoch on 455 rows: well above the 63 % majority class.
    assert tasks.accuracy(net, test) > 0.8
