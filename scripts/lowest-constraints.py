"""Print pip constraints pinning every declared runtime dependency to its lower bound.

``make test-lowest`` installs the package with these constraints (``pip install -c``) and runs
the suite, so the lower bounds in setup.cfg are versions that were seen to pass. Covers
install_requires and the runtime extras (scim, rq, postgres); test tools stay at their newest.
"""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

RUNTIME_EXTRAS = ("scim", "rq", "postgres")
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(?P<spec>.*)$")


def lower_bounds(setup_cfg: Path) -> dict[str, str]:
    """``{name: lowest version}`` of every runtime requirement that has a ``>=`` bound."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    lines = parser["options"]["install_requires"].splitlines()
    for extra in RUNTIME_EXTRAS:
        lines += parser["options.extras_require"][extra].splitlines()
    bounds: dict[str, str] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = REQUIREMENT.match(line)
        if match is None:
            raise SystemExit(f"cannot read requirement {line!r}")
        lower = re.search(r">=\s*([0-9][^,\s]*)", match["spec"])
        if lower is None:
            raise SystemExit(f"{line!r} has no lower bound (>=): every dependency needs one")
        bounds[match["name"].lower()] = lower[1]
    return bounds


def main() -> None:
    setup_cfg = Path(sys.argv[1] if len(sys.argv) > 1 else "setup.cfg")
    for name, version in sorted(lower_bounds(setup_cfg).items()):
        print(f"{name}=={version}")
        if name == "psycopg":  # psycopg[binary] pulls psycopg-binary of the same version
            print(f"psycopg-binary=={version}")


if __name__ == "__main__":
    main()
