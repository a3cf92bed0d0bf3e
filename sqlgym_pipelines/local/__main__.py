"""python -m sqlgym_pipelines.local up|down|status|env|destroy|seed|dev|demo"""

import argparse
import sys

from sqlgym_pipelines.lib.errors import SqlgymError
from sqlgym_pipelines.local.stack import LocalStack


def _up(stack: LocalStack, fast: bool = False):
    from sqlgym_pipelines.local.provision import provision

    already = stack.info()
    info = stack.up(fast=fast)
    provision(info)
    verb = "already running" if already else "started"
    print(f"local stack {verb}: postgres {_where(info.pg_url)}, AWS (moto) {info.s3_endpoint_url}")
    print(f"endpoints written to {stack.env_file}")
    return info, already is None


def _where(url: str) -> str:
    return url.split("@")[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sqlgym_pipelines.local", description=__doc__)
    parser.add_argument("--root", help="state directory (default: $SQLGYM_LOCAL_DIR or .local/)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start Postgres and moto (reuse them if running), create dbs/buckets")
    sub.add_parser("down", help="stop exactly what `up` started (data is kept)")
    sub.add_parser("destroy", help="down, then delete the Postgres data dir")
    sub.add_parser("status", help="show what runs, exit 1 if the stack is not running")
    sub.add_parser("env", help="print the stack's environment as KEY=VALUE lines")
    seed = sub.add_parser("seed", help="(re)load demo data into the stack (starts it if needed)")
    seed.add_argument("--scale", type=float, default=1.0, help="demo data size multiplier")
    seed.add_argument(
        "--keep", action="store_true", help="keep existing rows, add missing ones (default: reset)"
    )
    dev = sub.add_parser("dev", help="up + seed + dagster dev; Ctrl-C stops everything it started")
    dev.add_argument("--port", type=int, default=3000)
    demo = sub.add_parser("demo", help="up + seed + materialize the graph for yesterday, then stop")
    demo.add_argument("--date", help="partition date (default: yesterday, UTC)")
    args = parser.parse_args(argv)

    stack = LocalStack(args.root)
    try:
        if args.command == "up":
            _up(stack)
        elif args.command == "down":
            stack.down()
            print("local stack stopped")
        elif args.command == "destroy":
            stack.destroy()
            print(f"local stack stopped and {stack.root / 'pg'} deleted")
        elif args.command == "status":
            info = stack.info()
            if not info:
                print("local stack is not running (start it: make stack-up)")
                return 1
            pg_desc = f"pid {info.pg_pid}" if info.pg_managed else "external (SQLGYM_PG_URL)"
            print(f"postgres  {_where(info.pg_url)}  {pg_desc}")
            print(f"moto      {info.s3_endpoint_url}  pid {info.moto_pid}")
            print(f"env file  {stack.env_file}")
        elif args.command == "env":
            info = stack.info()
            if not info:
                print("local stack is not running (start it: make stack-up)", file=sys.stderr)
                return 1
            for key, value in sorted(info.env().items()):
                print(f"{key}={value}")
        elif args.command == "seed":
            from sqlgym_pipelines.local.demo import seed_all

            info, _ = _up(stack)
            seed_all(info, scale=args.scale, reset=not args.keep)
        elif args.command == "dev":
            from sqlgym_pipelines.local.dev import check_ui_port, run_dev

            check_ui_port(args.port)
            info, started = _up(stack)
            return run_dev(stack, info, port=args.port, stop_stack_after=started)
        elif args.command == "demo":
            from sqlgym_pipelines.local.dev import run_demo

            info, started = _up(stack)
            return run_demo(stack, info, date=args.date, stop_stack_after=True)
    except SqlgymError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
