"""``python -m sandboxes.stripe [--host H] [--port P] [--webhook-retry-seconds N]``."""

from __future__ import annotations

import argparse

from . import serve_forever


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the local Stripe sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument(
        "--webhook-retry-seconds",
        type=int,
        default=None,
        help="wait before the first webhook retry, doubling after (default: Stripe's 1 h)",
    )
    parser.add_argument("--allow-non-loopback", action="store_true")
    args = parser.parse_args(argv)
    serve_forever(
        args.host,
        args.port,
        allow_non_loopback=args.allow_non_loopback,
        webhook_retry_base_seconds=args.webhook_retry_seconds,
    )


if __name__ == "__main__":
    main()
