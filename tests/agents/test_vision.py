"""Policies that see: image observations through the learners, checkpoints, ONNX and evaluation."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agents.cli import run as cli  # noqa: E402
from agents.common import checkpoint as ckpt  # noqa: E402
from agents.common.config import ConfigError, make_config  # noqa: E402
from agents.common.spaces import UnsupportedSpaceError, check_spaces, flatten_one, image_layout  # noqa: E402
from agents.common.vision import PixelNorm, PixelStore, VisionActor, random_shift, shift_images  # noqa: E402
from agents.train import TrainError, load_policy, train  # noqa: E402

IMAGES = {"obs_mode": "rgb", "image_size": 32}
QUICK = {"round_steps": "200", "n_envs": "2", "updates_per_round": "20", "batch_size": "32", "net_width": "32"}


def _space(side=32, cams=("top", "wrist")):
    sub = {c: gym.spaces.Box(0, 255, (side, side, 3), np.uint8) for c in cams}
    return gym.spaces.Dict({**sub, "proprio": gym.spaces.Box(-1, 1, (5,), np.float32)})


def test_the_layout_finds_each_camera_in_the_flat_vector():
    space = _space()
    layout = image_layout(space)
    obs = space.sample()
    flat = flatten_one(space, obs)
    assert layout.dim == flat.shape[0] == 2 * 32 * 32 * 3 + 5
    for cam in layout.cameras:
        np.testing.assert_array_equal(flat[cam.start : cam.start + cam.size], obs[cam.key].reshape(-1))
    actor = VisionActor(layout, 3, 16, 1)
    images = actor.images(torch.as_tensor(flat)[None])
    np.testing.assert_array_equal(images["wrist"][0].permute(1, 2, 0).numpy(), obs["wrist"])
    assert image_layout(gym.spaces.Box(-1, 1, (4,), np.float32)) is None


def test_images_outside_the_encoder_range_are_refused_naming_the_key():
    act = gym.spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(
        UnsupportedSpaceError, match=r"observation\['top'\]: images must be 32 to 256 pixels a side, got 16x16"
    ):
        check_spaces(_space(16), act)
    bad = gym.spaces.Dict({"top": gym.spaces.Box(0, 255, (32, 32, 1), np.uint8)})
    with pytest.raises(UnsupportedSpaceError, match=r"observation\['top'\]: images must be \(height, width, 3\) RGB"):
        check_spaces(bad, act)
    check_spaces(_space(), act)
    stacked = gym.spaces.Dict({"top": gym.spaces.Box(0, 255, (32, 32, 6), np.uint8)})
    check_spaces(stacked, act)  # two frames
    layout = image_layout(stacked)
    assert layout.cameras[0].channels == 6 and layout.dim == 32 * 32 * 6
    out = VisionActor(layout, 3, 16, 1)(torch.zeros(2, layout.dim))
    assert out.shape == (2, 3)


def test_random_shift_moves_each_image_as_a_whole_within_the_pad():
    img = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    out = shift_images(img, 2, gen)
    padded = torch.nn.functional.pad(img, (2, 2, 2, 2), mode="replicate")
    for k in range(2):  # some crop of the padded image, the same for all three channels
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[k], padded[k, :, dy : dy + 8, dx : dx + 8])
        ]
        assert len(hits) == 1
    assert torch.equal(shift_images(img, 0), img)
    space = _space()
    layout = image_layout(space)
    flat = torch.as_tensor(np.stack([flatten_one(space, space.sample()) for _ in range(4)]))
    shifted = random_shift(flat, layout, 4)
    vec = torch.as_tensor(~layout.pixel_mask)
    assert torch.equal(shifted[:, vec], flat[:, vec])  # the robot's readings are never shifted
    assert not torch.equal(shifted, flat)


def test_pixels_keep_fixed_statistics_and_are_stored_as_bytes():
    space = _space()
    layout = image_layout(space)
    norm = PixelNorm(layout, min_std=0.01)
    flat = torch.as_tensor(np.stack([flatten_one(space, space.sample()) for _ in range(64)]))
    norm.update(flat)
    out = norm(flat)
    pix = torch.as_tensor(layout.pixel_mask)
    torch.testing.assert_close(out[:, pix], flat[:, pix] / 127.5 - 1.0)
    assert abs(float(out[:, ~pix].mean())) < 0.2  # the readings are standardised by their running statistics
    store = PixelStore(100_000, layout, torch.device("cpu"))
    store.put(torch.arange(64), flat)
    assert store.pix.dtype == torch.uint8 and len(store.pix) == 1024  # memory taken as rows come, not all at once
    torch.testing.assert_close(store.get(torch.arange(64)), flat)


def test_dagger_from_images_checkpoints_resumes_exports_and_evaluates(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = make_config("dagger", "FactoryReach-v0", {**QUICK, "total_steps": "400", "eval_episodes": "2"})
    cfg.env_kwargs = IMAGES
    result = train(cfg, run, quiet=True)
    assert result["step"] >= 400
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    labelled = [r["labelled"] for r in rows if "labelled" in r][-1]
    policy, doc = load_policy(run)
    assert set(doc["obs_space"]["spaces"]) == {"top", "proprio"}
    env = gym.make("FactoryReach-v0", **IMAGES)
    obs, _ = env.reset(seed=0)
    flat = torch.as_tensor(flatten_one(env.observation_space, obs))[None]
    with torch.no_grad():
        action = policy(flat)
    assert action.shape == (1, env.action_space.shape[0]) and torch.isfinite(action).all()
    # resumed: the uint8 aggregate comes back whole
    cfg.total_steps = 600
    train(cfg, run, resume=True, quiet=True)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    after = [r["labelled"] for r in rows if "labelled" in r][-1]
    assert after > labelled and after >= 570  # every state of both lives; a lost aggregate would hold about 200
    # ONNX: the same actions, and the cameras named in the model's metadata
    pytest.importorskip("onnxruntime")
    import onnx

    from agents.evaluation.runner import PolicyError, _OnnxPolicy

    assert cli(["export", str(run), "--onnx", str(tmp_path / "p.onnx")]) == 0
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "p.onnx")).metadata_props}
    cams = json.loads(props["factory_twin.obs_images"])
    assert [c["camera"] for c in cams] == ["top"] and cams[0]["shape"] == [32, 32, 3]
    onnx_policy = _OnnxPolicy(str(tmp_path / "p.onnx"))
    onnx_policy.check(env)
    policy, _ = load_policy(run)  # the resumed run's
    with torch.no_grad():
        action = policy(flat)
    np.testing.assert_allclose(onnx_policy(flat[0].numpy()), action.numpy(), atol=1e-4)
    env.close()
    # twin eval plays a checkpoint's suite with the observation it was trained with, and says so
    (tmp_path / "tiny.toml").write_text('name = "tiny"\n[[tasks]]\nenv_id = "FactoryReach-v0"\nseeds = [1, 2]\n')
    args = ["eval", "--policy", str(run), "--suite", str(tmp_path / "tiny.toml"), "--videos", "0"]
    assert cli([*args, "--out", str(tmp_path / "ev")]) == 0
    meta = json.loads((tmp_path / "ev" / "results.json").read_text())["scorecard"]
    assert meta["observation"] == IMAGES
    assert "Observation the policy used" in (tmp_path / "ev" / "report.html").read_text()
    assert cli([*args, "--policy", str(tmp_path / "p.onnx"), "--out", str(tmp_path / "ev2")]) == 2  # sees no images
    assert cli([*args, "--policy", str(tmp_path / "p.onnx"), "--out", str(tmp_path / "ev3"), "--obs", "rgb"]) == 2
    assert "reads camera 'top' as 32x32x3" in capsys.readouterr().err
    assert (
        cli(
            [
                *args,
                "--policy",
                str(tmp_path / "p.onnx"),
                "--out",
                str(tmp_path / "ev4"),
                "--obs",
                "rgb",
                "--image-size",
                "32",
            ]
        )
        == 0
    )
    for kwargs, message in (
        (
            {"obs_mode": "rgb", "image_size": 48},
            r"reads camera 'top' as 32x32x3 \(HWC, RGB\); the suite's .* gives 48x48x3",
        ),
        ({}, r"reads cameras \['top'\]; the suite's FactoryReach-v0 gives state observations"),
    ):
        other = gym.make("FactoryReach-v0", **kwargs)
        with pytest.raises(PolicyError, match=message):
            onnx_policy.check(other)
        other.close()


def test_ppo_learns_from_images_and_its_policy_exports(tmp_path):
    cfg = make_config(
        "ppo", "FactoryReach-v0", {"total_steps": "256", "n_envs": "2", "n_steps": "64", "net_width": "32"}
    )
    cfg.env_kwargs = IMAGES
    result = train(cfg, tmp_path / "ppo", quiet=True)
    assert result["step"] >= 256
    policy, doc = load_policy(tmp_path / "ppo")
    assert doc["algo"] == "ppo" and set(doc["obs_space"]["spaces"]) == {"top", "proprio"}
    assert policy.norm.mean[0] != 127.5 or policy.norm.var[0] != 127.5**2  # proprio first: its own statistics
    pix = torch.as_tensor(image_layout(doc["obs_space"]).pixel_mask)
    assert torch.all(policy.norm.mean[pix] == 127.5) and torch.all(policy.norm.var[pix] == 127.5**2)
    pytest.importorskip("onnxruntime")
    assert cli(["export", str(tmp_path / "ppo"), "--onnx", str(tmp_path / "ppo.onnx")]) == 0


def test_sac_from_images_learns_through_a_shared_encoder_and_resumes_its_byte_replay(tmp_path):
    run = tmp_path / "sac"
    sets = {"total_steps": "300", "n_envs": "2", "learning_starts": "100", "batch_size": "16", "net_width": "32"}
    cfg = make_config("sac", "FactoryReach-v0", {**sets, "eval_episodes": "1", "image_shift": "2"})
    cfg.env_kwargs = IMAGES
    assert train(cfg, run, quiet=True)["step"] >= 300
    state = ckpt.load_state(ckpt.resolve_checkpoint(run), torch.device("cpu"))
    tensors = state["tensors"]
    # one encoder (and its target) for the critics and the actor; the replay keeps pixels as bytes
    assert any(k.startswith("model.encoder.encoders.top.") for k in tensors)
    assert any(k.startswith("model.encoder_target.") for k in tensors)
    assert not any(k.startswith("model.actor.") and "encoders" in k for k in tensors)
    replay = state["replay"]
    assert replay["replay.obs_pixels"].dtype == torch.uint8 and replay["replay.obs_pixels"].shape[2] == 32 * 32 * 3
    assert int(replay["replay.t"].sum()) >= 300
    # the critics' loss moved the encoder: it is no longer its starting copy, and the target trails it
    enc = {k: v for k, v in tensors.items() if k.startswith("model.encoder.")}
    target = {
        k.replace("encoder_target", "encoder"): v for k, v in tensors.items() if k.startswith("model.encoder_target.")
    }
    assert any(not torch.equal(v, target[k]) for k, v in enc.items())
    cfg.total_steps = 400
    train(cfg, run, resume=True, quiet=True)
    replay = ckpt.load_state(ckpt.resolve_checkpoint(run), torch.device("cpu"))["replay"]
    assert int(replay["replay.t"].sum()) >= 400  # the stored images came back and grew
    policy, doc = load_policy(run)
    assert doc["algo"] == "sac" and set(doc["obs_space"]["spaces"]) == {"top", "proprio"}
    env = gym.make("FactoryReach-v0", **IMAGES)
    obs, _ = env.reset(seed=0)
    flat = torch.as_tensor(flatten_one(env.observation_space, obs))[None]
    with torch.no_grad():
        action = policy(flat)
    env.close()
    assert action.shape == (1, 3) and torch.isfinite(action).all()
    pytest.importorskip("onnxruntime")
    from agents.evaluation.runner import _OnnxPolicy

    assert cli(["export", str(run), "--onnx", str(tmp_path / "sac.onnx")]) == 0
    np.testing.assert_allclose(_OnnxPolicy(str(tmp_path / "sac.onnx"))(flat[0].numpy()), action.numpy(), atol=1e-4)


def test_image_replay_keeps_bytes_grows_as_it_fills_and_refuses_a_state_replay():
    from agents.common.buffers import ReplayBuffer

    layout = image_layout(_space(cams=("top",)))
    buf = ReplayBuffer(1000, 2, layout.dim, 3, torch.device("cpu"), layout=layout)
    assert buf.obs.pix.shape[1] == 256  # not the whole 500 slots per env yet
    rng = np.random.default_rng(0)
    obs = torch.as_tensor(np.concatenate([rng.uniform(-1, 1, (2, 5)), rng.integers(0, 256, (2, layout.dim - 5))], 1))
    obs = obs.float()[:, np.argsort(np.r_[np.flatnonzero(~layout.pixel_mask), np.flatnonzero(layout.pixel_mask)])]
    for t in range(300):
        buf.add(np.arange(2), obs, obs + (t % 2), torch.zeros(2, 3), torch.ones(2), torch.zeros(2), np.zeros(2, bool))
    assert buf.obs.pix.shape[1] == 500 and buf.obs.pix.dtype == torch.uint8
    o, _, r, *_ = buf.sample(64)
    hits = [(o[k] == obs).all(1).any().item() for k in range(64)]
    assert all(hits) and torch.all(r == 1.0)  # every sampled observation is one that was stored, exactly
    other = ReplayBuffer(1000, 2, layout.dim, 3, torch.device("cpu"), layout=layout)
    other.load_state(buf.state())
    torch.testing.assert_close(
        other.obs[torch.arange(2), torch.tensor([5, 7])], buf.obs[torch.arange(2), torch.tensor([5, 7])]
    )
    plain = ReplayBuffer(1000, 2, layout.dim, 3, torch.device("cpu"))
    with pytest.raises(ValueError, match="its observations are images, this run's are state vectors"):
        plain.load_state(buf.state())


def test_residual_rl_on_images_is_refused_and_cli_settings_are_checked(tmp_path, capsys):
    base = make_config("dagger", "FactoryReach-v0", {**QUICK, "total_steps": "200", "eval_episodes": "0"})
    base.env_kwargs = IMAGES
    train(base, tmp_path / "base", quiet=True)
    cfg = make_config(
        "sac", "FactoryReach-v0", {"total_steps": "100", "n_envs": "1", "base_policy": str(tmp_path / "base")}
    )
    cfg.env_kwargs = IMAGES
    with pytest.raises(
        TrainError, match=r"residual RL corrects a policy on state observations; .* gives images \(top\)"
    ):
        train(cfg, tmp_path / "sac", quiet=True)
    args = ["train", "--env", "ConveyorPick-v1", "--algo", "dagger", "--out", str(tmp_path / "x")]
    assert cli([*args, "--cameras", "top"]) == 2
    assert "--cameras, --image-size and --frames are settings of --obs rgb" in capsys.readouterr().err
    assert cli([*args, "--obs", "rgb", "--cameras", "top,side", "--steps", "10"]) == 2
    assert "no camera named 'side'" in capsys.readouterr().err
    assert cli([*args, "--obs", "rgb", "--image-size", "8", "--steps", "10"]) == 2
    assert "image_size must be 32 to 256 pixels, got 8" in capsys.readouterr().err


def test_a_student_sees_stacked_frames_from_the_command_line(tmp_path):
    run = tmp_path / "stacked"
    args = ["train", "--env", "FactoryReach-v0", "--algo", "dagger", "--obs", "rgb", "--image-size", "32"]
    args += ["--frames", "2", "--steps", "200", "--out", str(run)]
    sets = {**QUICK, "eval_episodes": "1"}
    assert cli([*args, *(a for k, v in sets.items() for a in ("--set", f"{k}={v}"))]) == 0
    _, doc = load_policy(run)
    assert doc["obs_space"]["spaces"]["top"]["shape"] == [32, 32, 6]
    assert doc["config"]["env_kwargs"] == {"obs_mode": "rgb", "image_size": 32, "frames": 2}


def test_image_students_get_their_own_defaults_and_explicit_settings_win():
    rgb = {"env_kwargs": '{"obs_mode": "rgb"}'}
    cfg = make_config("dagger", "ConveyorPick-v1", rgb)
    assert (cfg.lr, cfg.batch_size, cfg.updates_per_round) == (3e-4, 256, 600)
    assert make_config("dagger", "ConveyorPick-v1", {**rgb, "lr": "1e-3"}).lr == 1e-3
    state = make_config("dagger", "ConveyorPick-v1")
    assert (state.lr, state.batch_size, state.updates_per_round) == (1e-3, 512, 1000)


def test_an_averaged_actor_on_images_is_refused_naming_the_setting(tmp_path):
    cfg = make_config("sac", "FactoryReach-v0", {"total_steps": "100", "n_envs": "1", "actor_average": "0.1"})
    cfg.env_kwargs = IMAGES
    with pytest.raises(ConfigError, match=r"actor_average \(0.1\) takes state observations: on FactoryReach-v0's"):
        train(cfg, tmp_path / "sac", quiet=True)
