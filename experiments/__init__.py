"""absl experiment binaries, one per experiment of the paper: `python -m experiments.NAME`."""
