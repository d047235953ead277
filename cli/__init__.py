"""The command-line skin over the library: each command turns options into one library call and renders it."""


__all__: list[str] = []
