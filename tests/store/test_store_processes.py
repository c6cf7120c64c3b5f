"""Several processes on one database file, and a process killed mid-write: nothing committed is lost."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cllm import Response
from cllm.store import ConversationStore

WRITER = r"""
import sys, time
from pathlib import Path
from cllm import Response
from cllm.store import ConversationStore

db, tag, count, shared, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
with ConversationStore(db) as store:
    own = store.create_conversation(title=tag)
    while not go.exists():
        time.sleep(0.001)
    for i in range(count):
        conv = own.id if i % 2 else shared
        message = {"role": "user", "content": f"{tag} {i}"}
        store.log_response(conv, Response(text=f"{tag}-{i}"), model="m", messages_in=[message], prompt=f"{tag} {i}")
print("done", own.id, flush=True)
"""

ENDLESS_WRITER = r"""
import sys
from cllm import Response
from cllm.store import ConversationStore

store = ConversationStore(sys.argv[1])
conv = store.create_conversation()
body = "lorem ipsum dolor " * 2000
i = 0
while True:
    logged = store.log_response(
        conv.id, Response(text=f"{i} {body}"), model="m", messages_in=[{"role": "user", "content": str(i)}]
    )
    print(logged.id, i, flush=True)  # printed only after the commit
    i += 1
"""

FILE_SIZE_LIMITED_WRITER = r"""
import json, os, resource, signal, sys
from cllm import Response
from cllm.store import ConversationStore, StoreError

store = ConversationStore(sys.argv[1])
conv = store.create_conversation()
kept = [store.log_response(conv.id, Response(text=f"kept {i}"), model="m", messages_in=[]).id for i in range(5)]
# The kernel refuses writes past this size, as a full disk would; SQLite sees the write fail.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = max(os.path.getsize(sys.argv[1]), os.path.getsize(sys.argv[1] + "-wal")) + 100_000
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
error = None
try:
    for i in range(100):
        store.log_response(conv.id, Response(text="x" * 30_000), model="m", messages_in=[])
except StoreError as e:
    error = str(e)
readable = [r.id for r in store.responses(limit=None) if r.text.startswith("kept")]
print(json.dumps({"kept": kept, "error": error, "readable": readable[::-1]}))
"""


def _integrity(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.execute("INSERT INTO responses_fts (responses_fts) VALUES ('integrity-check')")
    conn.close()


def test_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    db, go = tmp_path / "cllm.db", tmp_path / "go"
    with ConversationStore(db) as store:
        shared = store.create_conversation(title="shared")
        count, tags = 120, ["alpha", "beta", "gamma"]
        children = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(db), tag, str(count), shared.id, str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for tag in tags
        ]
        time.sleep(0.3)  # let them open the database and wait at the gate
        go.touch()
        while any(child.poll() is None for child in children):
            store.responses(limit=10, query="alpha")  # reading alongside the writers
            store.log_response(shared.id, Response(text="parent"), model="m", messages_in=[])
        outputs = [child.communicate() for child in children]
        assert [child.returncode for child in children] == [0, 0, 0], outputs

        texts = [r.text for r in store.responses(limit=None) if r.text != "parent"]
        assert len(texts) == len(set(texts)) == count * len(tags)
        for tag, (out, _) in zip(tags, outputs, strict=True):
            own_id = out.split()[1]
            # Each writer's turns come back in the order it wrote them.
            own = [m["content"] for m in store.history(own_id) if m["role"] == "assistant"]
            assert own == [f"{tag}-{i}" for i in range(1, count, 2)]
            in_shared = [
                m["content"]
                for m in store.history(shared.id)
                if m["role"] == "assistant" and m["content"].startswith(tag)
            ]
            assert in_shared == [f"{tag}-{i}" for i in range(0, count, 2)]
            assert len(store.responses(limit=None, query=tag)) == count
    _integrity(db)


def test_kill_9_mid_write_leaves_every_committed_row(tmp_path: Path) -> None:
    db = tmp_path / "cllm.db"
    child = subprocess.Popen(
        [sys.executable, "-c", ENDLESS_WRITER, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    committed: dict[str, int] = {}
    try:
        while len(committed) < 150:
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            rid, i = line.split()
            committed[rid] = int(i)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    _integrity(db)
    with ConversationStore(db) as store:
        rows = store.responses(limit=None)
        assert len(rows) >= len(committed)
        by_id = {r.id: r for r in rows}
        for rid, i in committed.items():
            assert by_id[rid].text.startswith(f"{i} lorem ipsum")
        conv = rows[0].conversation_id
        assert len(store.history(conv)) == 2 * len(rows)
        store.log_response(conv, Response(text="after the crash"), model="m", messages_in=[])
        assert store.responses(limit=1)[0].text == "after the crash"


def test_a_write_the_system_refuses_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "cllm.db"
    done = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMITED_WRITER, str(db)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["error"] is not None
    assert str(db) in result["error"] and "refused the write" in result["error"]
    assert result["readable"] == result["kept"]
    _integrity(db)
    with ConversationStore(db) as store:
        texts = [r.text for r in store.responses(limit=None)]
        assert texts[-5:] == [f"kept {i}" for i in range(4, -1, -1)]
        assert all(t == "x" * 30_000 for t in texts[:-5])  # whatever committed is whole
