"""`twin smoke`: every env, every observation mode, a few seeded steps, headless; every env
once more with each other arm it runs with (``envs.ARMS``) in place of its layout's Panda; and
every env with all its fault families and the standard randomisation, in its image mode where it
has one (camera faults and lighting change the images)."""

from __future__ import annotations

import numpy as np

import envs


def smoke_one(
    env_id: str, obs_mode: str, steps: int = 10, seed: int = 0, robot: str | None = None, varied: bool = False
) -> None:
    """Make, reset, step and render one env (with ``robot`` in place of the layout's arm; ``varied``:
    with every fault family and the standard randomisation); raises on any failure."""
    kwargs: dict = {"robot": robot} if robot else {}
    if varied:
        kwargs |= {"faults": "all", "randomize": True}
    env = envs.make(env_id, obs_mode=obs_mode, render_mode="rgb_array", **kwargs)
    try:
        obs, _ = env.reset(seed=seed)
        if not env.observation_space.contains(obs):
            raise AssertionError(f"reset observation is outside the observation space ({obs_mode})")
        env.action_space.seed(seed)
        for _ in range(steps):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            if not env.observation_space.contains(obs):
                raise AssertionError(f"step observation is outside the observation space ({obs_mode})")
            if not np.isfinite(r) or "is_success" not in info:
                raise AssertionError("reward is not finite or info lacks is_success")
            if term or trunc:
                env.reset()
        frame = env.render()
        if frame is None or frame.ndim != 3 or frame.shape[2] != 3:
            raise AssertionError("render() did not return an RGB frame")
    finally:
        env.close()


def cases() -> list[tuple[str, str, str | None, bool]]:
    """(env id, observation mode, arm in place of the layout's or None, faults and randomisation on)."""
    out: list[tuple[str, str, str | None, bool]] = []
    for env_id in envs.ENV_IDS:
        modes = envs.TASKS[env_id].obs_modes
        out += [(env_id, mode, None, False) for mode in modes]
        out += [(env_id, "state", arm, False) for arm in envs.ARMS[env_id] if arm != "panda"]
        out.append((env_id, "rgb" if "rgb" in modes else "state", None, True))
    return out
