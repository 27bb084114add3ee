"""The operators' commands: ``flashclaim codes`` and ``flashclaim bind``."""

from __future__ import annotations

import json

from gateway.channels.codes import CodeHasher, normalize
from gateway.keys import CODE_INDEX
from tests.helpers import JWT_SECRET, child_env, flashclaim, open_now, published


async def test_codes_are_written_once_to_csv_and_only_their_hashes_kept(
    settings, ops, pool, redis, tmp_path
):
    campaign = await published(ops)
    out = tmp_path / "codes.csv"
    env = child_env(settings)
    done = flashclaim(env, "codes", campaign.id, "--count", "500", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "500 codes in batch" in done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "code,campaign_id,batch_id"
    codes = [line.split(",")[0] for line in lines[1:]]
    assert len(set(codes)) == 500
    hasher = CodeHasher.for_settings("", JWT_SECRET)
    hashes = {hasher(normalize(code) or "") for code in codes}
    blob = await pool.fetchval("SELECT hashes FROM code_batches")
    assert {blob[i : i + 16].hex() for i in range(0, len(blob), 16)} == hashes
    assert set(await redis.hkeys(CODE_INDEX)) == hashes
    dump = json.dumps([str(dict(r)) for r in await pool.fetch("SELECT * FROM code_batches")])
    assert not any(str(normalize(code)) in dump for code in codes[:50])  # no code in the database

    missing = flashclaim(env, "codes", "no-such", "--count", "5")
    assert missing.returncode == 1
    assert "no campaign no-such" in missing.stderr


async def test_bind_shows_progress_and_prints_the_counts(settings, ops, tmp_path):
    campaign = await published(ops, stock=30, **open_now())
    users = tmp_path / "users.csv"
    users.write_text("user_id\n" + "\n".join(f"u{i}" for i in range(50)) + "\n")
    report = tmp_path / "report.csv"
    env = child_env(settings)
    args = ("bind", campaign.id, str(users), "--job", f"cli-{campaign.id}", "--report", str(report))
    done = flashclaim(env, *args, "--batch", "20")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["done"] == result["total"] == 50
    assert result["reasons"] == {"ACCEPTED": 30, "SOLD_OUT": 20}
    assert "50/50" in done.stderr  # the progress bar
    assert len(report.read_text().splitlines()) == 51
    status = flashclaim(env, "bind", "--status", "--job", f"cli-{campaign.id}")
    assert json.loads(status.stdout)["status"] == "done"
