"""Command line: ``python -m vedart demo`` runs a short tour; ``python -m vedart info``
prints the runtime's configuration."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "demo"
    if command == "demo":
        from ._demo import run_demo

        return run_demo()
    if command == "info":
        import vedart as veda

        runtime = veda.get_runtime()
        print(f"vedart {veda.__version__}")
        for key, value in runtime.config.to_dict().items():
            print(f"  {key}: {value}")
        return 0
    print("usage: python -m vedart [demo|info]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
