"""``twin serve-opcua``: plant software reads, subscribes to and writes a running twin over OPC UA."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import subprocess
import sys

import pytest
from asyncua import Client, ua

from agents.cli import run as twin
from agents.tools.opcua import serve


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _with_server(target: str, body, allow_writes: bool = False, speed: float = 1.0, **kwargs):
    """Serve ``target``, run ``body(client, ns, server)`` against it, stop the server."""
    port, ready, stop, holder = _port(), asyncio.Event(), asyncio.Event(), {}

    def on_ready(srv):
        holder["srv"] = srv
        ready.set()

    task = asyncio.create_task(
        serve(target, port, allow_writes=allow_writes, speed=speed, on_ready=on_ready, stop=stop, **kwargs)
    )
    done, _ = await asyncio.wait([task, asyncio.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # it failed to start: raise why
    try:
        async with Client(f"opc.tcp://127.0.0.1:{port}/factory-twin/") as client:
            ns = await client.get_namespace_index("urn:factory-twin")
            await body(client, ns, holder["srv"])
    finally:
        stop.set()
    return await task


async def _until(done, timeout: float = 30.0) -> None:
    """Poll ``done()`` until it holds (the server steps in its own task): no fixed wall-clock waits."""
    for _ in range(int(timeout / 0.02)):
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting on the served twin")


async def _twin_seconds(twin, seconds: float) -> None:
    """Wait until the served twin has run ``seconds`` more of its own time."""
    end = twin.sim_time + seconds
    await _until(lambda: twin.sim_time >= end)


async def _bad(node, variant) -> str:
    try:
        await node.write_value(ua.DataValue(variant))
    except ua.UaStatusCodeError as exc:
        return type(exc).__name__
    return "accepted"


def test_read_browse_units_and_read_only_by_default():
    async def body(client, ns, srv):
        objects = client.nodes.objects
        names = {(await n.read_browse_name()).Name for n in await objects.get_children()}
        assert {"panda-0", "conveyor-0", "kpis"} <= names
        speed = await objects.get_child([f"{ns}:conveyor-0", f"{ns}:speed"])
        assert await speed.read_value() == pytest.approx(0.1)
        units = await (await speed.get_child("0:EngineeringUnits")).read_value()
        assert units.DisplayName.Text == "m/s" and units.UnitId == int.from_bytes(b"MTS", "big")
        joint = await objects.get_child([f"{ns}:panda-0", f"{ns}:joint_0"])
        assert (await (await joint.get_child("0:EngineeringUnits")).read_value()).DisplayName.Text == "rad"
        assert await _bad(speed, ua.Variant(0.2, ua.VariantType.Double)) == "BadNotWritable"
        assert srv.cells[0][1].conveyors["conveyor-0"].velocity[0] == pytest.approx(0.1)

    stats = asyncio.run(_with_server("ConveyorPick-v1", body))
    assert stats["writes_refused"] == 1 and stats["writes_accepted"] == 0


def test_subscribe_and_write_a_belt_speed_that_the_physics_follows():
    async def body(client, ns, srv):
        objects = client.nodes.objects
        speed = await objects.get_child([f"{ns}:conveyor-0", f"{ns}:speed"])
        tool_x = await objects.get_child([f"{ns}:panda-0", f"{ns}:tool_x"])
        seen: list = []

        class Handler:
            def datachange_notification(self, node, val, data):
                seen.append((node, val))

        twin = srv.cells[0][1]
        belt = twin.conveyors["conveyor-0"]
        sub = await client.create_subscription(50, Handler())
        await sub.subscribe_data_change([tool_x, speed])
        await _twin_seconds(twin, 3.0)
        await _until(lambda: sum(n == tool_x for n, _ in seen) >= 5)  # the arm moves; its tool position streams in
        await speed.write_value(ua.DataValue(ua.Variant(0.2, ua.VariantType.Double)))
        await _until(lambda: any(n == speed and v == pytest.approx(0.2) for n, v in seen))
        await _twin_seconds(twin, 0.5)  # parts on the belt take up its new speed
        assert belt.velocity @ belt.direction == pytest.approx(0.2)  # the physics took the setpoint
        assert await speed.read_value() == pytest.approx(0.2)
        assert any(n == speed and v == pytest.approx(0.2) for n, v in seen)
        riding = [p for p in twin.parts if p.state == "on_conveyor"]
        for p in riding:  # a part resting on the belt now travels with it
            assert p.vel @ belt.direction == pytest.approx(0.2, abs=0.03)
        # bad writes get a status code; the twin runs on
        assert await _bad(speed, ua.Variant(5.0, ua.VariantType.Double)) == "BadOutOfRange"
        assert await _bad(speed, ua.Variant(-0.1, ua.VariantType.Double)) == "BadOutOfRange"
        assert await _bad(speed, ua.Variant(1, ua.VariantType.Int32)) == "BadTypeMismatch"
        assert await _bad(tool_x, ua.Variant(0.5, ua.VariantType.Double)) == "BadNotWritable"
        before = twin.sim_time
        await _twin_seconds(twin, 0.5)
        assert twin.sim_time > before
        running = await objects.get_child([f"{ns}:conveyor-0", f"{ns}:running"])
        await running.write_value(ua.DataValue(ua.Variant(False, ua.VariantType.Boolean)))
        await _until(lambda: not belt.running)
        await _twin_seconds(twin, 0.1)  # its speed signal published
        assert not belt.running and await speed.read_value() == 0.0

    stats = asyncio.run(_with_server("ConveyorPick-v1", body, allow_writes=True, speed=2.0))
    assert stats["writes_accepted"] == 2 and stats["writes_refused"] == 4


def test_stop_and_start_a_machine():
    async def body(client, ns, srv):
        running = await client.nodes.objects.get_child([f"{ns}:machine-1", f"{ns}:running"])
        state = await client.nodes.objects.get_child([f"{ns}:machine-1", f"{ns}:state_name"])
        twin = srv.cells[0][1]
        machine = twin.machines[1]
        await running.write_value(ua.DataValue(ua.Variant(False, ua.VariantType.Boolean)))
        await _until(lambda: machine.state == "down")
        await _twin_seconds(twin, 0.1)
        assert machine.state == "down" and await state.read_value() == "down"
        await running.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
        await _until(lambda: machine.state != "down")
        assert machine.state != "down"

    asyncio.run(_with_server("MachineTend-v1", body, allow_writes=True, speed=2.0))


def test_a_line_has_a_folder_per_cell_and_its_buffers():
    async def body(client, ns, srv):
        objects = client.nodes.objects
        names = {(await n.read_browse_name()).Name for n in await objects.get_children()}
        assert {"pick", "tend", "sort", "line", "buffer-0", "buffer-1"} <= names
        belt = await objects.get_child([f"{ns}:pick", f"{ns}:conveyor-0", f"{ns}:speed"])
        assert await belt.read_value() == pytest.approx(0.1)
        level = await objects.get_child([f"{ns}:buffer-0", f"{ns}:level"])
        assert await level.read_value() >= 0
        await _twin_seconds(srv.cells[0][1], 1.5)  # past the first KPI update
        throughput = await objects.get_child([f"{ns}:line", f"{ns}:throughput"])
        assert (
            await (await throughput.get_child("0:EngineeringUnits")).read_value()
        ).Description.Text == "parts per hour"

    asyncio.run(_with_server("pick_tend_sort", body, speed=4.0))


def test_cli_refuses_a_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "agents.cli",
                "serve-opcua",
                "ConveyorPick-v1",
                "--port",
                str(port),
                "--duration",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert r.returncode == 2
    assert f"--port {port}: cannot serve on 127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr


def _cycles(events, machine: str) -> list[float]:
    """Seconds each of ``machine``'s finished processing cycles took, from a twin's event log."""
    changes = [(e.t, e.detail) for e in events if e.kind == "machine_state" and e.station == machine]
    return [t1 - t0 for (t0, s0), (t1, _) in itertools.pairwise(changes) if s0 == "processing"]


def test_a_plant_log_replayed_is_what_the_server_serves(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    from agents.cli.telemetry import load_replay
    from agents.tools.play import run_episodes
    from twin.paths import LAYOUTS_DIR

    # a 'plant' whose machines run 2-2.5 s cycles where the bundled layout says 4-5 s
    text = (LAYOUTS_DIR / "machine_tending.toml").read_text()
    (tmp_path / "plant.toml").write_text(text.replace("process_time = [4.0, 5.0]", "process_time = [2.0, 2.5]"))
    log = tmp_path / "plant"
    run_episodes(
        "MachineTend-v1",
        "expert",
        2,
        5,
        telemetry=log,
        telemetry_rate=5,
        env_kwargs={"layout": str(tmp_path / "plant.toml")},
    )
    _, env_id, layout, plans, _ = load_replay(str(log), None, str(LAYOUTS_DIR / "machine_tending.toml"))

    async def body(client, ns, srv):
        state = await client.nodes.objects.get_child([f"{ns}:machine-0", f"{ns}:state_name"])
        seen: list = []

        class Handler:
            def datachange_notification(self, node, val, data):
                seen.append(val)

        twin = srv.cells[0][1]
        sub = await client.create_subscription(20, Handler())
        await sub.subscribe_data_change([state])
        await _twin_seconds(twin, 30.0)
        # the served twin's machines run the log's cycles: machine-0's 2-2.5 s, not its layout's 4-5 s
        served = _cycles(twin.log.events, "machine-0")
        assert len(served) >= 2 and max(served) < 3.0
        for machine in ("machine-0", "machine-1"):
            served = _cycles(twin.log.events, machine)
            assert served and served == pytest.approx(plans[0].process_times[machine][: len(served)], abs=0.06)
        assert "processing" in seen  # and the clients see it

    asyncio.run(_with_server(env_id, body, speed=8.0, replay=plans, env_kwargs={"layout": str(layout)}))
    # from the command line: serving ends with the log's last episode
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents.cli",
            "serve-opcua",
            "--replay",
            str(log),
            "--speed",
            "0",
            "--port",
            str(_port()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    served = float(re.search(r"served ([0-9.]+) twin seconds", r.stderr).group(1))
    assert served == pytest.approx(sum(p.duration_s for p in plans), abs=0.5)  # both episodes, one clock
    assert "replaying 2 episode(s)" in " ".join(r.stdout.split())
    for args, message in [
        (["pick_tend_sort", "--replay", str(log)], "a plant log drives one cell; pick_tend_sort is a line"),
        (["--replay", str(log), "--allow-writes"], "--allow-writes with --replay"),
        (["--replay", str(tmp_path / "nope")], f"LOG {tmp_path / 'nope'}: no such telemetry folder"),
        (["pick_tend_sort", "--layout", str(LAYOUTS_DIR / "machine_tending.toml")], "a line names its cells' layouts"),
        ([], "TARGET: name an env id or a line"),
    ]:
        assert twin(["serve-opcua", *args, "--port", str(_port())]) == 2
        said = " ".join(capsys.readouterr().err.split())
        assert message in said, (args, said)
