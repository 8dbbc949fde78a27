"""``ortpipe bench`` (placeholder until the benchmark report lands)."""


def add_commands(subparsers) -> None:
    pass
