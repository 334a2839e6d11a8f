"""Where experience comes from: vector envs of CPU worker processes, expert demonstrations."""
