"""One task per module."""
