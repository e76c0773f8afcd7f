"""Print the installed version of every direct dependency that pyproject.toml declares (base and the extras used).

Run by .ci/run and .ci/lowest before the tests, so that a red run on a fresh machine shows at once which
versions pip (or uv) resolved that day. Usage: python .ci/versions.py [EXTRA ...] [build]
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
project = pyproject["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:]:
    if extra == "build":  # the build requirements, where they are installed in this environment (.ci/lowest)
        requirements += pyproject["build-system"]["requires"]
        continue
    requirements += [r for r in project["optional-dependencies"][extra] if not r.startswith("mfrec[")]
seen = set()
print(f"python {sys.version.split()[0]}; direct dependencies as resolved:")
for requirement in requirements:
    name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
    if name.lower() in seen:
        continue
    seen.add(name.lower())
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        version = "not installed"
    print(f"  {name:<16} {version:<12} (declared {requirement})")
