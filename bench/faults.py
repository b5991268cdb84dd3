"""The fault matrix's longer faults in the sandbox (issue 14, item 4), alone and with a report: the operator
SIGKILLed in the middle of a retune pass, and Prometheus down for 5 minutes, each under load. `make test` runs
them too, beside the other test files; this writes their figures.

They are pytest functions in tests/e2e/test_faults_long.py (they share the sandbox fixture and the helpers of the
faults `make test` runs, tests/e2e/test_faults.py); this runs them in one sandbox and writes what they printed to
faults_long.log (the sandbox's logs under sandbox/) and their `FAULT` lines (failed requests of those offered, recovery, actions) to faults.md in --out.
Exit status: pytest's (a fault whose promise broke fails the bench).

    python -m bench.faults --out out/bench/faults
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

MODULE = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "test_faults_long.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/bench/faults"))
    parser.epilog = "Any other argument goes to pytest as it is (e.g. -k prometheus)."
    args, pytest_args = parser.parse_known_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "faults_long.log"
    # Its own temporary root (the sandbox's logs stay there): pytest's shared one keeps only the newest 3 runs, and
    # another pytest on the machine could remove this sandbox's files while it runs.
    argv_pytest = [sys.executable, "-m", "pytest", str(MODULE), "-s", "-q", "-p", "no:cacheprovider",
                   "--durations=5", f"--basetemp={(args.out / 'sandbox').resolve()}", *pytest_args]
    with open(log, "w") as out:
        done = subprocess.run(argv_pytest, stdout=out, stderr=subprocess.STDOUT, cwd=MODULE.parents[2])
    text = log.read_text(errors="replace")
    rows = [line.split("FAULT ", 1)[1] for line in text.splitlines() if line.startswith("FAULT ")]
    durations = [line for line in text.splitlines() if " call " in line]
    (args.out / "faults.md").write_text(
        "# Longer faults under load (bench/faults.py)\n\n" + "".join(f"- {r}\n" for r in rows)
        + "\nTest times:\n\n" + "".join(f"    {d}\n" for d in durations)
        + f"\npytest exit status {done.returncode}; full output in {log.name}\n")
    print((args.out / "faults.md").read_text())
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
