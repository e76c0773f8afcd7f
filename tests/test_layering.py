"""The layers of docs/architecture.md hold: imports point downwards.

Every ``import`` / ``from ... import`` in the package (including the ones inside functions) is read from the
source with ``ast``; a lower layer importing a higher one fails here, naming the file and the module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mfrec

PACKAGE = Path(mfrec.__file__).parent

#: layer (a folder or module of the package) -> the mfrec modules it must never import
FORBIDDEN = {
    "kernels": ("mfrec.data", "mfrec.models", "mfrec.evaluation", "mfrec.distributed", "mfrec.serve", "mfrec.cli",
                "mfrec.persist", "mfrec.plots"),
    "data": ("mfrec.models", "mfrec.evaluation", "mfrec.distributed", "mfrec.serve", "mfrec.cli", "mfrec.plots"),
    "models": ("mfrec.distributed.dask", "mfrec.serve", "mfrec.cli", "mfrec.plots", "mfrec.evaluation.evaluator",
               "mfrec.evaluation.search"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(layer):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not bad, "\n".join(bad)

