"""What the algorithms share: configs, networks, replay storage, checkpoints, spaces, run folders."""
