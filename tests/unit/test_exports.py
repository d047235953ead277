from __future__ import annotations

import nemoclaw_runtime


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert nemoclaw_runtime.__all__ == sorted(nemoclaw_runtime.__all__)
    for name in nemoclaw_runtime.__all__:
        assert getattr(nemoclaw_runtime, name) is not None, name


def test_typed_package() -> None:
    from importlib.resources import files

    assert files("nemoclaw_runtime").joinpath("py.typed").is_file()
