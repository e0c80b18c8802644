"""The package is typed (py.typed): mypy --strict finds nothing in it."""

from __future__ import annotations

from pathlib import Path

import mandate


def test_the_package_passes_mypy_strict() -> None:
    from mypy import api

    assert (Path(mandate.__file__).parent / "py.typed").exists(), "the installed package says it is typed"
    src = Path(__file__).resolve().parent.parent / "src" / "mandate"
    out, err, status = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", str(src)])
    assert status == 0, out + err
