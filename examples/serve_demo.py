"""The web demo: a fresh store with the sample data, an editor's token, and ``tollbook serve``
on it; prints the URL to open and the token to sign in with. Ctrl-C stops it.

    .venv/bin/python examples/serve_demo.py [--port 8765] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def tollbook(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tollbook", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr.strip())
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--keep", help="keep the demo store in this folder")
    options = parser.parse_args()
    folder = options.keep or tempfile.mkdtemp(prefix="tollbook-serve-demo-")
    os.environ["TOLLBOOK_DB"] = str(Path(folder) / "demo.db")
    os.environ["TOLLBOOK_EDITOR"] = "demo"
    for sample in ("seed-2018-09-09.jsonl", "illustrative-revisions.jsonl"):
        tollbook("ingest", str(HERE / sample))
    token = tollbook("token", "create", f"demo-editor-{os.getpid()}", "--role", "editor")
    url = f"http://127.0.0.1:{options.port}"
    print(f"store:  {os.environ['TOLLBOOK_DB']} (the sample data)")
    print(f"token:  {token}  (an editor's; sign in with it)")
    print(f"open:   {url}/incidents/sy-2018-09-08-abdeen")
    print(f"        {url}/incidents/vo-ardin-shelling-0510  (a merged-away id: corrections, a retraction, a merge)")
    print(f"API:    curl -H 'Authorization: Bearer {token}' '{url}/api/tally?by=admin1'")
    print("Ctrl-C stops the server.", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "tollbook", "serve", "--port", str(options.port)], check=False)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
