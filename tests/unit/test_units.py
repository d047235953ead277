"""The one byte formatter: binary units picked by magnitude, never "0.0 GiB" for a non-zero size."""

from __future__ import annotations

import pytest

from nemoclaw_runtime.kernel.units import GIB, KIB, MIB, TIB, format_bytes, format_mib


@pytest.mark.parametrize(("n", "shown"), [
    (0, "0 B"),
    (1, "1 B"),
    (1023, "1023 B"),
    (1024, "1.0 KiB"),
    (1536, "1.5 KiB"),
    (100_000, "97.7 KiB"),
    (MIB - 1, "1.0 MiB"),  # 1023.999 KiB would read "1024 KiB": the next unit instead
    (300 * MIB, "300 MiB"),
    (int(1023.4 * MIB), "1023 MiB"),
    (int(1023.6 * MIB), "1.0 GiB"),
    (1_000_000_000, "954 MiB"),  # a decimal gigabyte is not a GiB
    (int(23.56 * GIB), "23.6 GiB"),
    (81559 * MIB, "79.6 GiB"),
    (652472 * MIB, "637 GiB"),
    (5 * TIB, "5.0 TiB"),
    (3000 * TIB, "3000 TiB"),  # the largest unit keeps counting
    (-2 * KIB, "-2.0 KiB"),
    (None, "?"),
])
def test_format_bytes(n: int | None, shown: str) -> None:
    assert format_bytes(n) == shown


@pytest.mark.parametrize("n", [1, 5, 512, 1000, 10**6, 10**9, 10**12, 12_345_678_901_234])
def test_a_non_zero_size_never_reads_zero(n: int) -> None:
    number = format_bytes(n).split()[0]
    assert float(number) >= 1


def test_the_number_stays_below_1024_of_its_unit() -> None:
    for exponent in range(1, 40):
        for n in (2**exponent - 1, 2**exponent, 2**exponent + 1):
            value, unit = format_bytes(n).split()
            assert float(value) < 1024 or unit == "TiB", n


def test_format_mib_and_unknown() -> None:
    assert format_mib(81920) == "80.0 GiB"
    assert format_mib(None) == "?" and format_mib(None, unknown="unknown") == "unknown"
    assert format_bytes(None, unknown="unknown") == "unknown"
