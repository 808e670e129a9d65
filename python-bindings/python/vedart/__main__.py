"""Command line: ``python -m vedart demo`` runs a short tour (``demo --cluster
local`` or ``--cluster tcp://host:port``: a map on a Dask cluster);
``python -m vedart info`` prints the runtime's configuration."""

from __future__ import annotations

import sys

import vedart as veda

from ._demo import run_cluster_demo, run_demo


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "demo"
    if command == "demo":
        if argv[1:2] == ["--cluster"] and len(argv) == 3:
            return run_cluster_demo(argv[2])
        if len(argv) > 1:
            print("usage: python -m vedart demo [--cluster local|tcp://host:port]", file=sys.stderr)
            return 2
        return run_demo()
    if command == "info":
        runtime = veda.get_runtime()
        print(f"vedart {veda.__version__}")
        for key, value in runtime.config.to_dict().items():
            print(f"  {key}: {value}")
        return 0
    print("usage: python -m vedart [demo [--cluster ADDRESS]|info]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
