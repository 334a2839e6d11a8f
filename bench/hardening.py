"""Hostile inputs and rough handling, run against the ``twin`` command line: one row per case with
its command, exit code, time and message (the last traceback line where one reached the user).

    python bench/hardening.py [--repo PATH] [--out table.md]

``--repo`` runs the cases against another checkout of the project (its code on PYTHONPATH), so
a table before and after a change comes from the same script. Prints a Markdown table and one
``hardening.<case> <exit code> exit`` line per case.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = (ROOT / "assets" / "layouts" / "default.toml").read_text()


def _wait_until(predicate, timeout: float, what: str) -> None:
    """Poll until ``predicate()`` holds (a run under way) instead of guessing a fixed delay."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _rows(out: Path) -> int:
    """Episode rows an evaluation has kept so far in ``out``."""
    rows = out / "episodes.jsonl"
    return len(rows.read_text().splitlines()) if rows.exists() else 0


def _message(err: str) -> str:
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    if any(ln.startswith("Traceback") for ln in lines):
        return "traceback: " + next((ln for ln in reversed(lines) if not ln.startswith(("File", "^", "~"))), "")
    said = [i for i, ln in enumerate(lines) if ln.startswith(("twin:", "interrupted", "stopped"))]
    if not said:
        return lines[-1] if lines else ""
    i = said[0]
    if lines[i].endswith(":") and i + 1 < len(lines):  # "FILE: invalid layout (1 problem):" then the problem
        return f"{lines[i]} {lines[i + 1]}"
    return lines[i]


class Cases:
    def __init__(self, repo: Path, work: Path) -> None:
        self.repo, self.work = repo, work
        self.env = {**os.environ, "PYTHONPATH": str(repo), "COLUMNS": "200"}
        self.rows: list[tuple[str, str, str, float, str]] = []

    def twin(self, *args: str, timeout: float = 300) -> tuple[int | str, str, float]:
        cmd = [sys.executable, "-m", "agents.cli", *args]
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout, cwd=self.work)
        except subprocess.TimeoutExpired:
            return "timeout", f"still running after {timeout:g} s", time.perf_counter() - t0
        return p.returncode, _message(p.stderr), time.perf_counter() - t0

    def add(self, case: str, shown: str, result: tuple) -> None:
        code, msg, secs = result
        self.rows.append((case, shown, str(code), secs, msg))
        print(f"hardening.{case} {code} exit ({secs:.1f} s): {msg[:160]}", flush=True)

    def file(self, name: str, text: str | bytes) -> str:
        path = self.work / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return str(path)

    # -- inputs ----------------------------------------------------------------------------

    def layouts(self) -> None:
        cases = {
            "layout-nested-arrays": DEFAULT + "\nx = " + "[" * 100_000 + "]" * 100_000 + "\n",
            "layout-nested-tables": DEFAULT + "\ny = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n",
            "layout-conveyor-1e9": DEFAULT.replace("length = 1.6", "length = 1e9"),
            "layout-bin-1e9": DEFAULT.replace("size = [0.3, 0.3, 0.12]", "size = [1e9, 1e9, 0.12]"),
            "layout-gravity-1e300": DEFAULT.replace("solver_iterations = 50", "gravity = [0, 0, -1e300]"),
            "layout-mix-1e308": DEFAULT.replace("cube = 0.6, cylinder = 0.4", "cube = 1e308, cylinder = 1e308"),
        }
        for case, text in cases.items():
            self.add(
                case, f"twin layout check {case}.toml", self.twin("layout", "check", self.file(f"{case}.toml", text))
            )
        path = self.file("layout-invalid-utf8.toml", DEFAULT.encode().replace(b"A Panda", b"A \xff\xfe Panda"))
        self.add(
            "layout-invalid-utf8", "twin layout check layout-invalid-utf8.toml", self.twin("layout", "check", path)
        )
        (self.work / "jig.urdf").write_text(
            '<robot name="jig"><link name="b"><visual><geometry><mesh filename="meshes/jig.obj"/></geometry>'
            "</visual></link></robot>"
        )
        (self.work / "bad.urdf").write_text('<robot name="jig"><link name="b">')
        for case, ref in (
            ("fixture-etc-passwd", "/etc/passwd"),
            ("fixture-missing-mesh", "jig.urdf"),
            ("fixture-malformed-xml", "bad.urdf"),
        ):
            text = DEFAULT + f'\n[[fixtures]]\nurdf = "{ref}"\npose = {{ position = [1.0, 1.0, 0.0] }}\n'
            self.add(
                case, f"twin layout check {case}.toml", self.twin("layout", "check", self.file(f"{case}.toml", text))
            )
        tables = "".join("[[tables]]\nposition = [0, 0]\nsize = [0.1, 0.1, 0.1]\n" for _ in range(1_000_000))
        path = self.file("layout-million-tables.toml", DEFAULT + tables)
        self.add(
            "layout-million-tables", "twin layout check layout-million-tables.toml", self.twin("layout", "check", path)
        )

    def suites(self) -> None:
        head = 'name = "x"\n[[tasks]]\nenv_id = "FactoryReach-v0"\n'
        mix = self.file("mix.toml", DEFAULT.replace("cube = 0.6, cylinder = 0.4", "cube = 1e308, cylinder = 1e308"))
        cases = {
            "suite-seed-2**64": head + "seeds = [18446744073709551616]\n",
            "suite-env-kwargs-evil": 'name = "x"\n[[tasks]]\nenv_id = "ConveyorPick-v0"\nseeds = [1]\n'
            '[[tasks.variants]]\nname = "v"\nenv_kwargs = { evil = 1 }\n',
            "suite-layout-mix-1e308": f'name = "x"\n[[tasks]]\nenv_id = "ConveyorPick-v0"\nlayout = "{mix}"\nseeds = [1]\n',
            "suite-million-seeds": head + "seeds = " + json.dumps(list(range(1_000_000))) + "\n",
            "suite-nested": head + "seeds = " + "[" * 100_000 + "]" * 100_000 + "\n",
        }
        for case, text in cases.items():
            path = self.file(f"{case}.toml", text)
            out = str(self.work / f"out-{case}")
            args = ("eval", "--policy", "random", "--suite", path, "--out", out, "--videos", "0")
            self.add(case, f"twin eval --policy random --suite {case}.toml", self.twin(*args, timeout=120))

    def settings(self) -> None:
        for setting in (
            "net_width=1000000000",
            "lr=nan",
            "seed=-1",
            "buffer_size=0",
            "batch_size=0",
            "learning_starts=-5",
        ):
            out = str(self.work / "run-set")
            args = (
                "train",
                "--env",
                "FactoryReach-v0",
                "--algo",
                "sac",
                "--out",
                out,
                "--set",
                setting,
                "--steps",
                "600",
            )
            self.add(f"set-{setting.split('=')[0]}", f"twin train --algo sac --set {setting}", self.twin(*args))
            subprocess.run(["rm", "-rf", out])

    def checkpoints(self) -> None:
        run = self.work / "ckpt-run"
        args = ("train", "--env", "FactoryReach-v0", "--algo", "sac", "--out", str(run), "--steps", "300")
        code, msg, _ = self.twin(*args, "--set", "learning_starts=100", "--set", "eval_episodes=0")
        if code != 0:
            print(f"hardening: could not train the checkpoint to damage ({msg})")
            return
        goal = self.file(
            "goal.toml",
            'name = "goal"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [1]\n[[tasks.variants]]\nname = "goal"\n'
            'env_kwargs = { obs_mode = "goal", reward_type = "sparse" }\n',
        )

        def damaged(case: str, fn) -> Path:
            copy = self.work / f"ck-{case}"
            subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
            folder = next((copy / "checkpoints").glob("step-*"))
            fn(folder)
            return copy

        def sidecar(fn):
            def f(folder: Path) -> None:
                doc = json.loads((folder / "checkpoint.json").read_text())
                fn(doc)
                (folder / "checkpoint.json").write_text(json.dumps(doc))

            return f

        def flip(folder: Path) -> None:
            b = bytearray((folder / "model.safetensors").read_bytes())
            b[len(b) // 2] ^= 0xFF
            (folder / "model.safetensors").write_bytes(bytes(b))

        def misshape_replay(folder: Path) -> None:
            import hashlib

            import torch
            from safetensors.torch import save_file

            save_file({"replay.obs": torch.zeros(1, 3, 2)}, str(folder / "replay.safetensors"))
            doc = json.loads((folder / "checkpoint.json").read_text())
            doc["files"]["replay.safetensors"] = hashlib.sha256(
                (folder / "replay.safetensors").read_bytes()
            ).hexdigest()
            (folder / "checkpoint.json").write_text(json.dumps(doc))

        damages = {
            "flipped-byte": flip,
            "corrupt-json": lambda f: (f / "checkpoint.json").write_text("{not json"),
            "step-not-a-number": sidecar(lambda d: d.update(step="many")),
            "width-not-a-number": sidecar(lambda d: d["config"].update(net_width="wide")),
            "files-malformed": sidecar(lambda d: d.update(files={"model.safetensors": 42})),
            "huge-obs-shape": sidecar(lambda d: d.update(obs_space={"type": "Box", "shape": [10**9]})),
            "replay-misshaped": misshape_replay,
        }
        for case, fn in damages.items():
            copy = damaged(case, fn)
            out = str(self.work / f"eval-{case}")
            args = ("eval", "--policy", str(copy), "--suite", goal, "--out", out, "--videos", "0")
            self.add(f"ckpt-{case}-eval", f"twin eval --policy <{case} checkpoint>", self.twin(*args))
            args = ("export", str(copy), "--onnx", str(self.work / f"{case}.onnx"))
            self.add(f"ckpt-{case}-export", f"twin export <{case} checkpoint>", self.twin(*args))
            args = (
                "train",
                "--env",
                "FactoryReach-v0",
                "--algo",
                "sac",
                "--out",
                str(copy),
                "--resume",
                "--steps",
                "400",
            )
            self.add(f"ckpt-{case}-resume", f"twin train --resume <{case} run>", self.twin(*args))

    def dev_zero(self) -> None:
        args = ("eval", "--policy", "/dev/zero", "--suite", "smoke-v1", "--out", str(self.work / "zero"))
        self.add("policy-dev-zero", "twin eval --policy /dev/zero", self.twin(*args, timeout=30))

    # -- processes and outputs --------------------------------------------------------------

    def _long_suite(self) -> str:
        return self.file(
            "long.toml",
            'name = "long"\n[[tasks]]\nenv_id = "ConveyorPick-v0"\nseeds = ' + json.dumps(list(range(300))) + "\n",
        )

    def _reach_suite(self) -> str:
        return self.file(
            "reach.toml",
            'name = "reach"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = ' + json.dumps(list(range(300))) + "\n",
        )

    def _start_eval(self, out: Path, *extra: str, suite: str | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "agents.cli", "eval", "--policy", "random", "--suite", suite or self._long_suite()]
        return subprocess.Popen(
            [*cmd, "--out", str(out), "--videos", "0", "--workers", "2", *extra],
            env=self.env,
            cwd=self.work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    @staticmethod
    def _children(pid: int) -> list[int]:
        """The processes whose parent is ``pid`` (from /proc: no procps needed)."""
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(stat.parent.name))
        return kids

    @staticmethod
    def _alive(pids: list[int]) -> int:
        n = 0
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            n += state != "Z"
        return n

    def _kept(self, out: Path) -> str:
        if (out / "episodes.jsonl").exists():
            return f"{_rows(out)} episode rows kept"
        if (out / "results.json").exists():
            return f"{len(json.loads((out / 'results.json').read_text())['episodes'])} rows in results.json"
        return "no results written"

    def interrupts(self) -> None:
        for case, sig in (("eval-ctrl-c", signal.SIGINT), ("eval-sigterm", signal.SIGTERM)):
            out = self.work / case
            p = self._start_eval(out)
            _wait_until(lambda out=out: _rows(out) >= 2, 300, "the first episode rows")
            t0 = time.perf_counter()
            os.killpg(p.pid, sig)
            try:
                _, err = p.communicate(timeout=120)
                code: int | str = p.returncode
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                _, err = p.communicate()
                code = "timeout"
            secs = time.perf_counter() - t0
            self.add(
                case,
                f"twin eval (300 ConveyorPick episodes), {sig.name} once 2 rows are written",
                (code, f"{self._kept(out)}; {_message(err)}", secs),
            )
        out = self.work / "eval-kill-main"
        p = self._start_eval(out)
        _wait_until(lambda: _rows(out) >= 1, 300, "the first episode row")
        workers = self._children(p.pid)
        p.kill()
        p.wait()
        with contextlib.suppress(RuntimeError):  # whoever is still alive after 5 s is counted below
            _wait_until(lambda: self._alive(workers) == 0, 5, "the workers to exit")
        left = self._alive(workers)
        self.add(
            "eval-kill-9-main",
            "kill -9 <twin eval>",
            (-9, f"{left} of {len(workers)} workers still running 5 s later", 0.0),
        )
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)
        out = self.work / "eval-kill-worker"
        p = self._start_eval(out)
        _wait_until(lambda: _rows(out) >= 1, 300, "the first episode row")
        workers = self._children(p.pid)
        t0 = time.perf_counter()
        if workers:
            os.kill(workers[0], signal.SIGKILL)
        _, err = p.communicate(timeout=600)
        done = json.loads((out / "results.json").read_text())["episodes"] if (out / "results.json").exists() else []
        failed = sum(1 for r in done if r.get("error"))
        self.add(
            "eval-kill-9-worker",
            "kill -9 <one eval worker>",
            (
                p.returncode,
                f"{len(done)} of 300 rows written, {failed} failed; {_message(err)}",
                time.perf_counter() - t0,
            ),
        )

    def train_sigterm(self) -> None:
        out = self.work / "train-term"
        cmd = [sys.executable, "-m", "agents.cli", "train", "--env", "ConveyorPick-v0", "--algo", "ppo", "--envs", "4"]
        p = subprocess.Popen(
            [*cmd, "--out", str(out), "--steps", "200000"],
            env=self.env,
            cwd=self.work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        metrics = out / "metrics.jsonl"
        _wait_until(lambda: metrics.exists() and metrics.stat().st_size > 0, 300, "training to log its first row")
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
        latest = out / "checkpoints" / "latest"
        tracebacks = err.count("Traceback")
        msg = f"checkpoint {'written' if latest.exists() else 'missing'}, {tracebacks} tracebacks; {_message(err)}"
        self.add("train-sigterm", "SIGTERM to twin train", (p.returncode, msg, 0.0))

    def policy_failures(self) -> None:
        import numpy as np
        from onnx import TensorProto, helper, numpy_helper, save

        w = numpy_helper.from_array(np.zeros((12, 3), np.float32), "w")
        b = numpy_helper.from_array(np.full((3,), np.nan, np.float32), "b")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["obs", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["action"])],
            "nan",
            [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 12])],
            [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 3])],
            [w, b],
        )
        save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(self.work / "nan.onnx"))
        suite = self.file("three.toml", 'name = "three"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [1, 2, 3]\n')
        args = ("eval", "--policy", str(self.work / "nan.onnx"), "--suite", suite, "--out", str(self.work / "nan-out"))
        self.add(
            "eval-all-episodes-fail",
            "twin eval --policy nan.onnx (every action NaN)",
            self.twin(*args, "--videos", "0"),
        )

    def outputs(self) -> None:
        suite = self.file("three2.toml", 'name = "three"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [1, 2, 3]\n')
        out = str(self.work / "rerun")
        args = ("eval", "--suite", suite, "--out", out, "--videos", "0")
        self.twin(*args, "--policy", "random")
        self.add("eval-rerun-existing-out", "twin eval into an existing --out", self.twin(*args, "--policy", "expert"))
        out = self.work / "both"
        a = self._start_eval(out, suite=self._reach_suite())
        _wait_until(lambda: (out / "run.json").exists(), 120, "the first evaluation to take the folder")
        cmd = [sys.executable, "-m", "agents.cli", "eval", "--policy", "expert", "--suite", self._reach_suite()]
        t0 = time.perf_counter()
        b = subprocess.run(
            [*cmd, "--out", str(out), "--videos", "0"],
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=900,
        )
        a.wait()
        both = f"first exit {a.returncode}; "
        if (out / "results.json").exists():
            doc = json.loads((out / "results.json").read_text())
            both += f"results.json from the {doc['scorecard']['policy']['kind']} policy; "
        self.add(
            "eval-concurrent-same-out",
            "a second twin eval into a busy --out",
            (b.returncode, _message(b.stderr), time.perf_counter() - t0),
        )
        run = self.work / "resumed"
        base = ("train", "--env", "FactoryReach-v0", "--algo", "sac", "--out", str(run), "--set", "eval_episodes=0")
        self.twin(*base, "--steps", "1000", "--set", "checkpoint_every=500", "--set", "log_every=250")
        (run / "checkpoints" / "latest").write_text("step-0000000500\n")  # as if the run died after step 500
        self.twin(*base, "--steps", "1500", "--resume")
        steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        mono = all(b > a for a, b in itertools.pairwise(steps))
        self.add(
            "train-resume-metrics",
            "metrics.jsonl after a resume",
            (0, f"steps {steps} ({'increasing' if mono else 'repeat'})", 0.0),
        )


def hostile(cases: Cases) -> None:
    """What a hostile ONNX policy costs an evaluation under the default limits: 10 FactoryReach
    episodes with a well-behaved policy, one whose every call takes seconds, and one that
    allocates 6 GB per call; wall-clock seconds per episode and the peak memory of one process
    of the evaluation (GNU time's maximum resident set size)."""
    sys.path.insert(0, str(ROOT))
    from tests.agents.hostile_policies import memory_policy, slow_policy
    from tests.agents.test_eval import _onnx_policy

    work = cases.work
    suite = cases.file(
        "ten.toml", 'name = "ten"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = ' + json.dumps(list(range(10))) + "\n"
    )
    policies = {
        "well-behaved": _onnx_policy(work / "ok.onnx", 12, 3),
        "slow (about 4 s per call)": slow_policy(work / "slow.onnx", 12, 3, n=2048, matmuls=16),
        "6 GB per call": memory_policy(work / "hog.onnx", 12, 3, gigabytes=6.0),
    }
    timer = ["/usr/bin/time", "-f", "maxrss_kb %M"] if Path("/usr/bin/time").exists() else []
    for name, path in policies.items():
        out = work / f"hostile-{path.stem}"
        cmd = [*timer, sys.executable, "-m", "agents.cli", "eval", "--policy", str(path), "--suite", suite]
        t0 = time.perf_counter()
        p = subprocess.run(
            [*cmd, "--out", str(out), "--videos", "0"], env=cases.env, cwd=work, capture_output=True, text=True
        )
        secs = time.perf_counter() - t0
        rss = next((ln.split()[1] for ln in p.stderr.splitlines() if ln.startswith("maxrss_kb")), None)
        rows = json.loads((out / "results.json").read_text())["episodes"] if (out / "results.json").exists() else []
        reason = rows[0]["failure"] if rows and rows[0]["failure"] else ""
        peak = f"peak RSS {int(rss) / 1024:.0f} MB" if rss else "peak RSS not measured"
        msg = f"{secs / max(len(rows), 1):.2f} s per episode, {peak}, {sum(r['error'] for r in rows)} of {len(rows)} failed: {reason[:90]}"
        cases.add(
            f"hostile-{path.stem}",
            f"twin eval --policy <{name}> (10 episodes, default limits)",
            (p.returncode, msg, secs),
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=ROOT, help="checkout to run the cases against")
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    ap.add_argument("--only", nargs="*", help="case groups to run (default: all)")
    args = ap.parse_args()
    groups = [
        "layouts",
        "suites",
        "settings",
        "checkpoints",
        "dev_zero",
        "policy_failures",
        "outputs",
        "interrupts",
        "train_sigterm",
    ]
    with tempfile.TemporaryDirectory(prefix="hardening-") as tmp:
        cases = Cases(args.repo.resolve(), Path(tmp))
        for group in args.only or groups:
            hostile(cases) if group == "hostile" else getattr(cases, group)()
    table = ["| case | command | exit | seconds | message |", "| --- | --- | --- | --- | --- |"]
    for case, shown, code, secs, msg in cases.rows:
        table.append(f"| {case} | `{shown}` | {code} | {secs:.1f} | {msg[:150].replace('|', '/')} |")
    text = "\n".join(table) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
