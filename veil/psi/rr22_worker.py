"""One party's RR22 PSI run, executed by the `.venv-psi` interpreter (not by veil's).

SecretFlow's `spu.libpsi` pins numpy < 2 and Python < 3.12, so it lives in its own
virtual environment and this file runs there as ``python rr22_worker.py DIR``: it imports
nothing from veil. Everything comes and goes through files in DIR (a private 0700
directory that veil made): ``config.json`` (rank, the two link addresses, TLS files),
``keys.csv`` (``k,i``: a key digest and its position), and it writes ``index.bin`` (the
positions of the common keys, little-endian int64, in the common order: ascending key
digest) and ``report.json``. Nothing secret is ever on a command line.
"""

import json
import os
import sys


def load_libpsi():
    """`spu.libpsi` and its link module, without running spu/__init__ (which imports jax:
    seconds of start-up that the PSI does not use)."""
    import importlib.util
    import types
    spec = importlib.util.find_spec("spu")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("spu is not installed in this environment")
    pkg = types.ModuleType("spu")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["spu"] = pkg
    import spu.libpsi as lp
    from spu.libspu import link
    return lp, link


def main(folder: str) -> int:
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    lp, link = load_libpsi()

    desc = link.Desc()
    for i, addr in enumerate(cfg["addrs"]):
        desc.add_party(f"party{i}", addr)
    desc.recv_timeout_ms = int(cfg["recv_timeout_ms"])
    desc.connect_retry_times = int(cfg["connect_retries"])
    desc.connect_retry_interval_ms = 200
    desc.brpc_channel_protocol = "baidu_std"
    desc.http_max_payload_size = 32 << 20
    if cfg.get("tls"):
        t = cfg["tls"]
        desc.enable_ssl = True
        for opts in (desc.client_ssl_opts, desc.server_ssl_opts):
            opts.cert.certificate_path = t["cert"]
            opts.cert.private_key_path = t["key"]
            opts.verify.ca_file_path = t["ca"]
            opts.verify.verify_depth = 1
    lctx = link.create_brpc(desc, int(cfg["rank"]))
    conf = lp.PsiExecuteConfig(
        protocol_conf=lp.PsiProtocolConfig(protocol=lp.PsiProtocol.PROTOCOL_RR22,
                                           receiver_rank=0, broadcast_result=True),
        input_params=lp.InputParams(path=os.path.join(folder, "keys.csv"),
                                    selected_keys=["k"], keys_unique=True),
        output_params=lp.OutputParams(path=os.path.join(folder, "out.csv"),
                                      disable_alignment=False))
    rep = lp.psi_execute(conf, lctx)
    lctx.stop_link()
    # out.csv: header, then "digest,position" sorted by digest (the same order at both).
    import numpy as np
    with open(os.path.join(folder, "out.csv"), "rb") as f:
        f.readline()
        pos = [int(line.rsplit(b",", 1)[1]) for line in f if line.strip()]
    np.asarray(pos, dtype="<i8").tofile(os.path.join(folder, "index.bin"))
    os.remove(os.path.join(folder, "out.csv"))
    with open(os.path.join(folder, "report.json"), "w") as f:
        json.dump({"intersection": int(rep.intersection_count),
                   "original": int(rep.original_count)}, f)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:          # veil checks that the environment works
        load_libpsi()
        sys.exit(0)
    sys.exit(main(sys.argv[1]))
