"""The ``twin`` command line.

Exit codes: 0 success, 1 a run failed (a smoke case; an evaluation episode that could not run to
its end: a policy fault, a limit, a dead worker), 2 bad input (unknown env id, invalid layout,
suite, config, checkpoint or policy, bad arguments), 130/143 stopped by Ctrl-C/SIGTERM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.cli.common import UsageError, _Parser, _play_inputs, _seed, err
from agents.cli.evaluate import cmd_compare, cmd_eval, cmd_report
from agents.cli.line import _duration, add_sweep_parser
from agents.cli.line import add_parsers as add_line_parsers
from agents.cli.opcua import add_parser as add_opcua_parser
from agents.cli.play import cmd_bench, cmd_envs, cmd_layout_check, cmd_layout_schema, cmd_play, cmd_record, cmd_smoke
from agents.cli.service import add_parsers as add_service_parsers
from agents.cli.telemetry import cmd_calibrate, cmd_fidelity, cmd_replay
from agents.cli.train import cmd_demos, cmd_export, cmd_train


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="twin", description="Factory Twin: digital twins of factory cells for physical AI.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("envs", help="list the environments")
    p.set_defaults(fn=cmd_envs)

    p = sub.add_parser("smoke", help="run every env and observation mode (and every env with each arm) for a few steps")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=_seed, default=0)
    p.set_defaults(fn=cmd_smoke)

    p = sub.add_parser(
        "play", help="run episodes with the expert or a random policy, or a line of cells; print KPIs, write a video"
    )
    p.add_argument("env_id", nargs="?", help="the env to play (or --line)")
    p.add_argument("--policy", choices=["expert", "random"], default="expert")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--video", metavar="FILE", help="write a .mp4 or .gif of the episodes")
    p.add_argument("--robot", metavar="MODEL", help="arm in place of the layout's: panda or iiwa")
    p.add_argument(
        "--faults", metavar="FAMILIES", help="'all', 'none' or comma-separated fault families (e.g. conveyor_jam)"
    )
    p.add_argument("--randomize", action="store_true", help="apply the layout's (or the standard) randomisation")
    p.add_argument("--video-size", default="480x360", metavar="WxH", help="video frame size in pixels (480x360)")
    p.add_argument(
        "--frame-stride", type=int, default=2, metavar="K", help="render every K-th control step into the video (2)"
    )
    p.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    p.add_argument("-v", "--verbose", action="store_true", help="print a line per episode")
    _play_inputs(p)
    p.add_argument(
        "--telemetry", metavar="DIR", help="record the run's signals and events into DIR (Parquet, OCEL 2.0)"
    )
    line = p.add_argument_group("lines of cells (--line; --episodes and --seed count runs of the line)")
    line.add_argument("--line", metavar="LINE", help="run a line file (or bundled line) in physics with the experts")
    line.add_argument("--duration", type=_duration, default=600.0, help="line seconds per run (600)")
    line.add_argument("--workers", type=int, default=2, help="processes running the runs (2)")
    line.add_argument("--out", metavar="DIR", help="write each run's events.csv and kpis.json under DIR/seed-N/")
    p.set_defaults(fn=cmd_play)

    p = sub.add_parser(
        "record", help="run episodes and record their telemetry: signals and events as Parquet, and OCEL 2.0"
    )
    p.add_argument("env_id")
    p.add_argument("--out", required=True, metavar="DIR", help="the telemetry folder to write (a new one)")
    p.add_argument("--policy", choices=["expert", "random"], default="expert")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--robot", metavar="MODEL", help="arm in place of the layout's: panda or iiwa")
    p.add_argument(
        "--faults", metavar="FAMILIES", help="'all', 'none' or comma-separated fault families (e.g. conveyor_jam)"
    )
    p.add_argument("--randomize", action="store_true", help="apply the layout's (or the standard) randomisation")
    p.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    p.add_argument("-v", "--verbose", action="store_true", help="print a line per episode")
    _play_inputs(p)
    p.set_defaults(fn=cmd_record, video=None, video_size="480x360", frame_stride=1)

    p = sub.add_parser(
        "fidelity", help="how close a twin run is to a plant log (or another run): fidelity.json and an HTML report"
    )
    p.add_argument("plant", metavar="PLANT_LOG", help="a telemetry folder: the plant's log (or a twin run)")
    p.add_argument("twin", metavar="TWIN_LOG", help="a telemetry folder: the twin run held against it")
    p.add_argument("--out", required=True, metavar="DIR", help="where fidelity.json and report.html go")
    p.add_argument("--seed", type=_seed, default=0, help="the bootstrap's seed")
    p.set_defaults(fn=cmd_fidelity)

    p = sub.add_parser(
        "replay", help="drive the twin with a plant log (arrivals, cycles, breakdowns, belts); the robots act"
    )
    p.add_argument(
        "log",
        metavar="LOG",
        help="the plant's log: a telemetry folder (events.parquet at least), an OCEL 2.0 JSON log or an XES log",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the replay's own telemetry folder (a new one)")
    p.add_argument("--env", help="the task (default: the one the log names)")
    p.add_argument("--policy", choices=["expert", "random"], default="expert")
    p.add_argument("--layout", metavar="FILE", help="the cell's layout (default: the one the log names)")
    p.add_argument("--telemetry-rate", type=float, metavar="HZ", help="the replay's telemetry samples per second")
    p.set_defaults(fn=cmd_replay)

    p = sub.add_parser("calibrate", help="fit a layout's parameters to a plant log; fidelity before and after")
    p.add_argument("plant", metavar="PLANT_LOG", help="a telemetry folder: the plant's log")
    p.add_argument("--layout", required=True, help="the layout to calibrate (a file or a bundled layout's name)")
    p.add_argument(
        "--fit",
        required=True,
        metavar="PARAMS",
        help="comma-separated; from the log: machines.<i>.process_time, feeders.<i>.interval, "
        "feeders.<i>.first_arrival, conveyors.<i>.speed, faults.machine_breakdown.mtbf|mttr, "
        "faults.conveyor_jam.rate|duration; by search over twin runs (with --range): "
        "robots.<i>.speed_override, agvs.<i>.max_speed, conveyors.<i>.friction",
    )
    p.add_argument(
        "--range",
        action="append",
        metavar="NAME=LO:HI",
        help="the range a searched parameter is fitted in (within the layout's bounds); once per parameter",
    )
    p.add_argument(
        "--search-episodes", type=int, help="episodes of each search candidate (default: 4, at most --episodes)"
    )
    p.add_argument("--rounds", type=int, default=3, help="search rounds, each refining the last (default 3)")
    p.add_argument("--points", type=int, default=5, help="search grid points per parameter per round (default 5)")
    p.add_argument("--workers", type=int, help="search candidates run at once (default 2)")
    p.add_argument("--backend", choices=["local", "ray"], default="local", help="local processes or Ray tasks")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--env", help="the task whose expert runs the twin (default: the one the log names)")
    p.add_argument("--episodes", type=int, default=0, help="twin episodes before and after (default: the plant's)")
    p.add_argument(
        "--seed", type=_seed, default=1000, help="the twin's first seed (not the plant's) and the bootstrap's"
    )
    p.set_defaults(fn=cmd_calibrate)

    p = sub.add_parser("layout", help="check a layout file or print the layout JSON Schema")
    lsub = p.add_subparsers(dest="layout_command", required=True, metavar="ACTION")
    q = lsub.add_parser("check", help="validate a layout file (exit 2 naming the field if invalid)")
    q.add_argument("file")
    q.set_defaults(fn=cmd_layout_check)
    q = lsub.add_parser("schema", help="print the layout JSON Schema")
    q.set_defaults(fn=cmd_layout_schema)

    p = sub.add_parser("bench", help="speed figures, one 'name value unit' line each")
    p.add_argument("--env", help="one env id (default: all)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--procs", type=int, default=None, help="largest vector-env process count (default: CPU count)")
    p.add_argument("--envs-per-worker", type=int, default=4, help="envs each pool worker steps in turn")
    p.add_argument("--episodes", type=int, default=1, help="whole episodes per env for the vector-env figures")
    p.add_argument(
        "--procs-only", action="store_true", help="vector-env figures at --procs processes only (not 1, 2, 4, ...)"
    )
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("train", help="train an agent (ppo, sac with HER, bc, dagger) and evaluate it on fixed seeds")
    p.add_argument("--env", required=True, help="env id (any registered Gymnasium id)")
    p.add_argument("--algo", choices=["ppo", "sac", "bc", "dagger"], required=True)
    p.add_argument("--steps", type=int, help="env steps (bc: gradient steps); default per task")
    p.add_argument("--envs", type=int, help="parallel envs; default per task")
    p.add_argument("--workers", type=int, help="env worker processes (default: one per core, at most one per env)")
    p.add_argument("--backend", choices=["local", "ray"], help="local worker processes (default) or Ray actors")
    p.add_argument("--seed", type=_seed)
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--demos",
        help="demonstrations (from `twin demos`): --algo bc clones them, --algo sac learns from them (RLPD), "
        "--algo dagger starts from them",
    )
    p.add_argument(
        "--curriculum",
        action="store_true",
        help="with --algo sac --demos: a reverse curriculum, episodes starting along the demos and moving back",
    )
    p.add_argument(
        "--difficulty-curriculum",
        action="store_true",
        help="train on the task's easier knob settings first (ConveyorPick: 1 part on a slow belt, 1, 2), then the task",
    )
    p.add_argument(
        "--obs",
        help="the env's observation mode (its obs_mode): state (default), goal, or rgb: the cameras' images and "
        "the robot's own readings (--algo bc and dagger)",
    )
    p.add_argument("--cameras", help="with --obs rgb: the cameras, comma-separated layout names (default the task's)")
    p.add_argument("--image-size", type=int, help="with --obs rgb: image side in pixels, 32 to 256 (default 84)")
    p.add_argument("--frames", type=int, help="with --obs rgb: frames each image stacks, 1 to 8 (default 1)")
    p.add_argument("--compile", action="store_true", help="compile the update with torch.compile (falls back to eager)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field; repeatable")
    p.add_argument("--show-config", action="store_true", help="print the resolved config as JSON and exit")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("demos", help="record scripted-expert demonstrations (safetensors)")
    p.add_argument("env_id")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--workers", type=int, default=1, help="env processes")
    p.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise on executed actions (DART)")
    p.add_argument("--env-kwargs", help='JSON keyword arguments for gym.make, e.g. \'{"robot": "iiwa"}\'')
    p.set_defaults(fn=cmd_demos)

    p = sub.add_parser("export", help="export a trained policy to ONNX (checked against torch)")
    p.add_argument("run", help="run folder or checkpoint folder")
    p.add_argument("--onnx", required=True, metavar="FILE")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("eval", help="evaluate a policy on a seed suite: results, scorecard, HTML report")
    p.add_argument(
        "--policy",
        required=True,
        help="expert, expert-observed (the expert deciding from the observation: BinSort's sorts by the sensor), "
        "random, a checkpoint folder, or FILE.onnx",
    )
    bundled = sorted(f.stem for f in (Path(__file__).resolve().parents[2] / "seeds").glob("*.toml"))
    p.add_argument("--suite", required=True, help=f"suite file, or a bundled one: {', '.join(bundled)}")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=1, help="parallel episodes")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--videos", type=int, default=1, help="episode videos per task in the report")
    p.add_argument("--resume", action="store_true", help="finish the evaluation in --out (only its missing episodes)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.add_argument(
        "--episode-seconds", type=float, help="wall-clock limit per episode (default: the suite's, else 300)"
    )
    p.add_argument("--call-seconds", type=float, help="wall-clock limit per policy call (default: the suite's, else 2)")
    p.add_argument("--memory-mb", type=int, help="memory an eval worker may add, MB (default: the suite's, else 4096)")
    p.add_argument(
        "--reference",
        metavar="DIR",
        help="an expert's twin eval folder to show beside the policy (default: the bundled one for the suite)",
    )
    p.add_argument(
        "--obs",
        choices=["state", "rgb"],
        help="the observation every variant is played with: rgb for an image policy (default: a checkpoint's own, "
        "else each variant's)",
    )
    p.add_argument("--cameras", help="with --obs rgb: the cameras, comma-separated (default the tasks')")
    p.add_argument("--image-size", type=int, help="with --obs rgb: image side in pixels (default 84)")
    p.add_argument("--frames", type=int, help="with --obs rgb: frames each image stacks (default 1)")
    p.add_argument("--task", action="append", metavar="ENV_ID", help="run only this task of the suite (repeatable)")
    p.add_argument("--variant", action="append", metavar="NAME", help="run only this variant of the tasks (repeatable)")
    p.add_argument(
        "--telemetry",
        metavar="DIR",
        help="record every episode's signals and events: one telemetry folder per task and variant in DIR",
    )
    p.add_argument(
        "--telemetry-rate",
        type=float,
        metavar="HZ",
        help="telemetry samples per simulated second (default: every step)",
    )
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("report", help="write a twin eval folder's report.html again (e.g. with another reference)")
    p.add_argument("folder")
    p.add_argument(
        "--reference", metavar="DIR", help="an expert's twin eval folder (or reference JSON) to show beside it"
    )
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("compare", help="compare two twin eval results, task by task")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--plot", metavar="FILE.png", help="write a side-by-side success plot")
    p.set_defaults(fn=cmd_compare)

    add_service_parsers(sub)
    add_line_parsers(sub)
    add_sweep_parser(sub)
    add_opcua_parser(sub)
    return ap


def run(argv: list[str] | None = None) -> int:
    from agents.extras import from_import_error

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except UsageError as exc:
        err.print(f"twin: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except ModuleNotFoundError as exc:  # an optional dependency a command reached for: name the extra
        missing = from_import_error(f"twin {args.command}", exc)
        if missing is None:
            raise
        err.print(f"twin: error: {missing}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
