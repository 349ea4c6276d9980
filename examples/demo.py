"""The demo: feeds the sample documents to a fresh store one step at a time and asks the
questions Tollbook exists for, through the real `tollbook` command.

    .venv/bin/python examples/demo.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def tollbook(*args: str, stdin: str | None = None) -> None:
    print(f"\n$ tollbook {' '.join(shlex.quote(a) for a in args)}", flush=True)
    subprocess.run([sys.executable, "-m", "tollbook", *args], input=stdin, text=True, check=False)


def now() -> str:
    time.sleep(0.01)  # so the instant falls strictly between two recordings
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="keep the demo store in this folder")
    folder = parser.parse_args().keep or tempfile.mkdtemp(prefix="tollbook-demo-")
    os.environ["TOLLBOOK_DB"] = str(Path(folder) / "demo.db")
    os.environ["TOLLBOOK_EDITOR"] = "demo"

    print("# 1. A real report (EA WorldView, Syria, 9 Sept 2018) and its 10:30 GMT update")
    tollbook("ingest", str(HERE / "seed-2018-09-09.jsonl"))
    tollbook("tally")
    tollbook("tally", "--measure", "facilities_damaged", "--group", "hospitals", "--by", "admin1")
    print("\n# What was known before the 10:30 update was published:")
    tollbook("tally", "--measure", "facilities_damaged", "--group", "hospitals",
             "--known-at", "2018-09-09T09:00:00Z")

    print("\n# 2. A made-up incident, one document at a time: revision, second source, correction,")
    print("#    retraction, duplicate incident and merge")
    lines = (HERE / "illustrative-revisions.jsonl").read_text().splitlines()
    instants = []
    for line in lines:
        tollbook("ingest", "-", stdin=line + "\n")
        instants.append(now())
    ardin = "nv-2024-05-10-ardin-market"
    tollbook("tally", "--incident", ardin)
    tollbook("history", "--incident", ardin, "--measure", "killed")
    print("\n# As the store stood after the second document (before the correction was recorded):")
    tollbook("tally", "--incident", ardin, "--as-of", instants[1])
    print("\n# Only what had been published by noon on 11 May 2024:")
    tollbook("tally", "--incident", ardin, "--known-at", "2024-05-11T12:00:00Z", "--policy", "latest")
    print("\n# What the retraction, the duplicate and the merge changed:")
    tollbook("diff", "--from", instants[2], "--to", instants[-1])
    tollbook("tally", "--by", "source")

    print("\n# 3. Real data in: a UCDP GED 19.1 extract (Myanmar and Bangladesh, 3,194 events)")
    ged = str(HERE / "ucdp-ged-19.1" / "ged191-myanmar-bangladesh.csv")
    tollbook("import", "ucdp", ged, "--release", "19.1", "--published-at", "2019-06-14")
    tollbook("tally", "--by", "year", "--known-at", "2019-12-31T00:00:00Z")
    print("\n# Importing the same release again stores nothing:")
    tollbook("import", "ucdp", ged, "--release", "19.1", "--published-at", "2019-06-14")
    tollbook("status")
    print(f"\nThe demo store is {os.environ['TOLLBOOK_DB']}")


if __name__ == "__main__":
    main()
