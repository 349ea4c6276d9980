"""Coverage-guided fuzzing of the document parser (issue 11): any bytes given to
``commands.documents.parse`` either parse into a command or raise BadDocument with one line.

    .venv/bin/pip install atheris
    .venv/bin/python bench/fuzz_documents.py -atheris_runs=200000 -max_total_time=300 [corpus dir]

The seeds are the examples' and the bad-input tests' kinds of documents; libFuzzer mutates
them. Any other exception, or a message over one line, is a finding (atheris stops and writes
the input as crash-*).
"""

import sys

import atheris

with atheris.instrument_imports():
    from tollbook.commands.documents import BadDocument, parse

SEEDS = [
    b'{"kind": "report", "report_id": "r", "published_at": "2024-01-02T00:00:00Z", "attributes": {"a": [1]},'
    b' "incidents": [{"incident_id": "i", "country": "C", "occurred_from": "2024-01-01", "x": {"y": null}}],'
    b' "claims": [{"incident_id": "i", "source": "White\\u00a0Helmets", "measure": "killed", "low": 1, "high": 2}]}',
    b'{"kind": "correction", "incident_id": "i", "source": "s", "measure": "killed", "version": 1, "low": 2,'
    b' "reason": "typo", "published_at": "2024-01-02T00:00:00.5+02:00"}',
    b'{"kind": "retraction", "incident_id": "i", "source": "s", "measure": "killed", "published_at": "2024-01-03",'
    b' "reason": "withdrawn"}',
    b'{"kind": "merge", "incident_id": "a", "into": "b", "reason": "same", "kind": "merge"}',
    b'{"kind": "incident", "incident_id": "i", "lat": 1.5, "title": "a\\u0000", "k\\u003ak": [[[]]]}',
]


def one_input(data: bytes) -> None:
    try:
        parse(data)
    except BadDocument as error:
        if "\n" in str(error) or not str(error):
            raise AssertionError(f"not one line: {error!r}") from None


def main() -> None:
    if len(sys.argv) > 1 and not sys.argv[-1].startswith("-"):
        import os

        os.makedirs(sys.argv[-1], exist_ok=True)
        for n, seed in enumerate(SEEDS):
            with open(os.path.join(sys.argv[-1], f"seed-{n}"), "wb") as out:
                out.write(seed)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
