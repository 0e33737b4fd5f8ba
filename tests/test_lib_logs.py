"""The JSON-lines logs of a data folder (one._lib.jsonl_log) and the two records built on it:
the load record (access_log) and the md5 record (verified); on real files."""
import json
import subprocess
import sys
from pathlib import Path

from one._lib import access_log
from one._lib.access_log import RECORD_NAME, AccessLog
from one._lib.jsonl_log import JsonLinesLog
from one._lib.verified import VerifiedFiles

ROOT = Path(__file__).resolve().parents[1]


def test_jsonl_log_reads_appends_and_rewrites(tmp_path):
    log = JsonLinesLog(tmp_path / 'sub' / 'log.jsonl')
    assert list(log.read()) == [] and log.size() == 0
    assert log.append([['a', 1], ['b', 2]])
    with open(log.path, 'a') as f:
        f.write('{"not": "a list"}\n["cut short')  # a crash mid-line, and a foreign line
    assert log.append([['c', 3]]) is True
    assert list(log.read()) == [['a', 1], ['b', 2], ['c', 3]]
    assert log.lines_read == 5  # the next append after a cut line starts a line of its own
    assert log.rewrite(lambda entries: [e for e in entries if e[0] != 'b']) == \
        [['a', 1], ['c', 3]]
    assert log.path.read_text() == '["a", 1]\n["c", 3]\n'


def test_appends_from_processes_at_once_are_all_kept(tmp_path):
    script = (f'import sys; sys.path.insert(0, {str(ROOT)!r})\n'
              'from one._lib.jsonl_log import JsonLinesLog\n'
              f'log = JsonLinesLog({str(tmp_path / "log.jsonl")!r})\n'
              'for i in range(300):\n'
              '    log.append([[sys.argv[1], i, "x" * 50]])\n')
    procs = [subprocess.Popen([sys.executable, '-c', script, name]) for name in 'abc']
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    entries = list(JsonLinesLog(tmp_path / 'log.jsonl').read())
    assert len(entries) == 900
    assert {(e[0], e[1]) for e in entries} == {(n, i) for n in 'abc' for i in range(300)}


def test_access_log_does_not_reread_itself_on_every_append(tmp_path, monkeypatch):
    """Once the log is big, a load must not re-parse it: it is checked for compaction only
    when its size has doubled since the last check."""
    log = AccessLog(tmp_path)
    big = ''.join(json.dumps([f'lab/Subjects/s/2024-01-01/001/alf/f{i}.npy', 1.0]) + '\n'
                  for i in range(5000))
    (tmp_path / RECORD_NAME).write_text(big)  # ~300 kB of distinct paths: no compaction
    reads = []
    original = JsonLinesLog.read

    def counting_read(self):
        reads.append(self.path)
        return original(self)

    monkeypatch.setattr(JsonLinesLog, 'read', counting_read)
    for i in range(50):
        log.touch([tmp_path / f'new{i}.npy'])
    assert len(reads) == 1  # the first append found it past the threshold: one check
    assert len(log.last_loaded()) == 5050


def test_access_log_compacts_to_the_latest_load_of_each_path(tmp_path, monkeypatch):
    monkeypatch.setattr(access_log, '_COMPACT_FROM', 2000)
    monkeypatch.setattr(access_log, '_SLACK_LINES', 10)
    log = AccessLog(tmp_path)
    for when in range(1, 200):
        log.touch([tmp_path / 'a.npy', tmp_path / 'b.npy'], when=float(when))
    assert len(log.path.read_text().splitlines()) < 100  # compacted on the way
    assert log.last_loaded() == {'a.npy': 199.0, 'b.npy': 199.0}


def test_verified_files_hash_once_and_compact(tmp_path):
    data = tmp_path / 'a.bin'
    data.write_bytes(b'x' * 100)
    record = VerifiedFiles(tmp_path)
    first = record.md5(data)
    assert VerifiedFiles(tmp_path).md5(data) == first  # read back from the record
    stat = data.stat()
    assert record.known(data, stat.st_size, stat.st_mtime_ns) == first
    record.add([(tmp_path / f'f{i}', 1, 1, '0' * 32) for i in range(600)])
    for _ in range(3):
        record.add([(tmp_path / f'f{i}', 1, 1, '0' * 32) for i in range(600)])
    lines = record.path.read_text().splitlines()
    assert len(lines) <= 2 * 601  # compacted: one line per file plus recent appends
    again = VerifiedFiles(tmp_path)
    assert again.known(data, stat.st_size, stat.st_mtime_ns) == first
    assert again.known(tmp_path / 'f599', 1, 1) == '0' * 32
