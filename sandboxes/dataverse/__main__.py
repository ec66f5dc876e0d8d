"""``python -m sandboxes.dataverse [--host H] [--port P] [--seed PATH]``."""

from __future__ import annotations

import argparse

from .sandbox import serve_forever


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the local Dataverse sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12113)
    parser.add_argument("--seed", default=None, help="a YAML/JSON seed file (default: no rows)")
    parser.add_argument("--allow-non-loopback", action="store_true")
    args = parser.parse_args(argv)
    serve_forever(args.host, args.port, seed=args.seed, allow_non_loopback=args.allow_non_loopback)


if __name__ == "__main__":
    main()
