"""``python -m connector.sandbox.salesforce [--host H] [--port P] [--seed sample|none|PATH]``."""

from __future__ import annotations

import argparse

from .sandbox import SAMPLE_ORG, serve_forever


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the local Salesforce sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument(
        "--seed", default="sample", help="'sample' (the demo org), 'none', or a YAML/JSON path"
    )
    parser.add_argument("--allow-non-loopback", action="store_true")
    args = parser.parse_args(argv)
    seed = {"sample": SAMPLE_ORG, "none": None}.get(args.seed, args.seed)
    serve_forever(args.host, args.port, seed=seed, allow_non_loopback=args.allow_non_loopback)


if __name__ == "__main__":
    main()
