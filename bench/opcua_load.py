"""OPC UA updates per second: a ``twin serve-opcua`` server (a cell worked by its expert) with 0, 1
and 10 clients each subscribed to every variable, at real time and as fast as the twin runs.

Prints one ``name value unit`` line per figure and writes ``opcua_load.json`` into ``--out``.
The server and the clients run in separate processes (the server in one, all clients in another).

Usage: python bench/opcua_load.py [--target ConveyorPick-v1] [--seconds 10] [--out bench/results/opcua]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import stamp  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _clients(url: str, n: int, seconds: float) -> dict:
    from asyncua import Client

    counts = [0] * n
    clients = [Client(url) for _ in range(n)]
    for c in clients:
        for _ in range(100):
            try:
                await c.connect()
                break
            except (TimeoutError, OSError):
                await asyncio.sleep(0.2)
    variables = []
    ns = await clients[0].get_namespace_index("urn:factory-twin")

    async def walk(node):
        for child in await node.get_children():
            cls = await child.read_node_class()
            name = await child.read_browse_name()
            if cls.name == "Variable" and name.NamespaceIndex == ns:
                variables.append(child.nodeid)
            elif cls.name in ("Object", "Folder") and name.NamespaceIndex == ns:
                await walk(child)

    await walk(clients[0].nodes.objects)

    class Handler:
        def __init__(self, k):
            self.k = k

        def datachange_notification(self, node, val, data):
            counts[self.k] += 1

    for k, c in enumerate(clients):
        sub = await c.create_subscription(50, Handler(k))
        await sub.subscribe_data_change([c.get_node(v) for v in variables], queuesize=0)
    await asyncio.sleep(1.0)  # the initial values in
    start = list(counts)
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    dt = time.perf_counter() - t0
    got = [b - a for a, b in zip(start, counts, strict=True)]
    for c in clients:
        await c.disconnect()
    return {"variables": len(variables), "per_client_per_s": [g / dt for g in got], "total_per_s": sum(got) / dt}


def run(target: str, clients: int, speed: float, seconds: float) -> dict:
    port = _port()
    server = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "serve-opcua", target, "--port", str(port), "--speed", str(speed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        for line in server.stdout:
            if "serving" in line:
                break
        if clients:
            result = asyncio.run(_clients(f"opc.tcp://127.0.0.1:{port}/factory-twin/", clients, seconds))
        else:
            time.sleep(seconds + 1)
            result = {"variables": 0, "per_client_per_s": [], "total_per_s": 0.0}
    finally:
        server.terminate()
        _, err = server.communicate(timeout=60)
    m = re.search(r"\(([\d,]+) control steps, ([\d.]+)/s\), ([\d,]+) value updates", err.replace("\n", " "))
    result["server_steps_per_s"] = float(m.group(2)) if m else float("nan")
    result["server_updates"] = int(m.group(3).replace(",", "")) if m else -1
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="ConveyorPick-v1")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default="bench/results/opcua")
    args = ap.parse_args()
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # its notes on revised subscription values
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for speed, label in ((1.0, "real_time"), (0.0, "flat_out")):
        for n in (0, 1, 10):
            r = run(args.target, n, speed, args.seconds)
            rows.append({"speed": speed, "clients": n, **r})
            per = sum(r["per_client_per_s"]) / n if n else 0.0
            print(f"opcua.{label}.clients_{n}.twin_steps {r['server_steps_per_s']:.4g} steps/s", flush=True)
            if n:
                print(f"opcua.{label}.clients_{n}.updates_per_client {per:.4g} notifications/s", flush=True)
                print(f"opcua.{label}.clients_{n}.updates_total {r['total_per_s']:.4g} notifications/s", flush=True)
    doc = {**stamp(), "target": args.target, "seconds": args.seconds, "publishing_interval_ms": 50, "runs": rows}
    (out / "opcua_load.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
