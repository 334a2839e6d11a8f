"""``twin serve-opcua``: a running twin as an OPC UA server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal

from agents.cli.common import UsageError, _layout_file, _require, _seed, err, out


def _speed(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0.0 <= v <= 1000.0:
        raise argparse.ArgumentTypeError(
            f"expected twin seconds per wall second from 0 (as fast as it runs) to 1000, got {text!r}"
        )
    return v


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port from 1 to 65535, got {text!r}")
    return v


def cmd_serve_opcua(args: argparse.Namespace) -> int:
    _require("twin serve-opcua", "opcua", ["asyncua"])
    import envs
    from agents.tools.opcua import serve
    from twin.layout import LayoutError
    from twin.line import LineError, find_line, load_line

    # asyncua logs what it also raises (a port in use) and notes on security policies; the
    # command reports what matters in one line of its own
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    target, replay, env_kwargs = args.target, None, None
    if args.replay is not None:
        from agents.cli.telemetry import load_replay

        _require("--replay", "telemetry", ["pyarrow"])
        if args.allow_writes:
            raise UsageError("--allow-writes with --replay: a replayed cell's belts and machines follow the log")
        if target is not None and target not in envs.ENV_IDS and ":" not in target:
            try:
                find_line(target)
            except FileNotFoundError:
                pass
            else:
                raise UsageError(f"--replay: a plant log drives one cell; {target} is a line")
        _, target, layout_ref, replay, report = load_replay(args.replay, target, args.layout)
        for line in report:
            err.print(f"repaired: {line}", markup=False)
        env_kwargs = {"layout": str(layout_ref)}
    elif target is None:
        raise UsageError("TARGET: name an env id or a line (or give --replay LOG)")
    try:
        if target not in envs.ENV_IDS and target not in getattr(envs, "SKILL_IDS", ()):
            try:
                load_line(find_line(target))
            except FileNotFoundError:
                envs.check_env_id(target)  # neither a line nor an env: the env id's own error
    except (ValueError, LayoutError) as exc:
        raise UsageError(f"{target}: {exc}") from None
    if args.layout is not None and replay is None:
        if target not in envs.ENV_IDS:
            raise UsageError(f"--layout: a line names its cells' layouts itself; {target} is not a cell task")
        env_kwargs = {"layout": _layout_file(args.layout)}

    async def main() -> dict:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(srv) -> None:
            mode = "setpoints writable" if args.allow_writes else "read-only"
            if replay is not None:
                mode += f", replaying {len(replay)} episode(s) of {args.replay}"
            pace = "as fast as it runs" if args.speed == 0 else f"{args.speed:g}x real time"
            out.print(f"serving {target} at {srv.endpoint} ({mode}, {pace}); Ctrl-C stops", highlight=False)

        return await serve(
            target,
            args.port,
            allow_writes=args.allow_writes,
            seed=args.seed,
            speed=args.speed,
            duration=args.duration,
            on_ready=ready,
            stop=stop,
            replay=replay,
            env_kwargs=env_kwargs,
        )

    try:
        stats = asyncio.run(main())
    except OSError as exc:
        raise UsageError(f"--port {args.port}: cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc}") from None
    except (LineError, ValueError) as exc:
        raise UsageError(f"{target}: {exc}") from None
    err.print(
        f"served {stats['twin_s']:.1f} twin seconds ({stats['steps']} control steps, {stats['steps_per_s']:.1f}/s), "
        f"{stats['updates']:,} value updates, {stats['writes_accepted']} writes accepted, {stats['writes_refused']} refused"
    )
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve-opcua", help="serve a running twin (a cell with its expert, a plant log's replay, or a line) over OPC UA"
    )
    p.add_argument(
        "target",
        nargs="?",
        help="an env id (its expert works the cell) or a line file / bundled line; with --replay, the log's task by default",
    )
    p.add_argument(
        "--replay",
        metavar="LOG",
        help="drive the cell from a plant log (a telemetry folder, or an OCEL 2.0 or XES file, as twin replay "
        "takes it): its part arrivals, machine cycles, breakdowns and belts; serving ends with its last episode",
    )
    p.add_argument(
        "--layout", metavar="FILE", help="the cell's layout in place of its task's (with --replay: of the log's)"
    )
    p.add_argument("--port", type=_port, default=4840, help="TCP port on 127.0.0.1 (4840)")
    p.add_argument(
        "--allow-writes",
        action="store_true",
        help="accept writes of the setpoints (belt speed and running, machine running)",
    )
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument(
        "--speed", type=_speed, default=1.0, help="twin seconds per wall second (1: real time; 0: as fast as it runs)"
    )
    p.add_argument(
        "--duration", type=float, default=None, help="stop after this many twin seconds (default: run until stopped)"
    )
    p.set_defaults(fn=cmd_serve_opcua)
