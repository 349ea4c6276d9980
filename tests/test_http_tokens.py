"""``tollbook token create|list|revoke`` (CONTRACT section 9), on both stores: the store keeps
only a hash, names are unique, and every refusal is one line with the contract's exit code."""

from __future__ import annotations

import hashlib
import json

from conftest import sql


def test_tokens_are_made_listed_and_revoked(run, db_path):
    code, out, err = run("token", "create", "ana", "--role", "editor")
    assert code == 0 and err == ""
    token = out.strip()
    assert token.startswith("tb_") and len(token) > 40 and "\n" not in token
    second = run("token", "create", "rita", "--role", "reader")[1].strip()
    assert second != token
    # the store holds a hash of each token, never the token
    rows = sql(db_path, "SELECT name, role, key, digest, revoked_at FROM tollbook_tokens ORDER BY name")
    assert [(r[0], r[1]) for r in rows] == [("ana", "editor"), ("rita", "reader")]
    assert rows[0][3] == hashlib.sha256(token.encode()).hexdigest()
    assert not any(token in str(value) for row in rows for value in row)
    listed = json.loads(run("token", "list", "--format", "json")[1])["tokens"]
    assert [(t["name"], t["role"], t["revoked"], t["last_used_at"]) for t in listed] == [
        ("ana", "editor", False, None), ("rita", "reader", False, None)]
    assert token not in json.dumps(listed) and rows[0][3] not in json.dumps(listed)
    assert run("token", "revoke", "ana") == (0, "revoked ana\n", "")
    table = run("token", "list")[1]
    assert "ana" in table and "revoked 20" in table and token not in table
    assert run("token", "revoke", "ana")[0] == 0  # revoking again changes nothing


def test_refusals_are_one_line(run):
    assert run("token", "create", "ana", "--role", "editor")[0] == 0
    for args, expected in [
        (("token", "create", "ana", "--role", "reader"), 1),  # the name is taken
        (("token", "revoke", "nobody"), 1),
        (("token", "create", "x\ty", "--role", "reader"), 1),
        (("token", "create", " padded", "--role", "reader"), 1),
        (("token", "create", "w" * 201, "--role", "reader"), 1),
        (("token", "create", "bob", "--role", "admin"), 2),
        (("token", "create", "bob"), 2),
    ]:
        code, out, err = run(*args)
        assert code == expected, (args, err)
        assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, args
