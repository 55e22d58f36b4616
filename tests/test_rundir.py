"""One writer per run directory (issue 15, item 2): the lock, its takeover after a kill,
the clean-up of killed writes' temp files, and no empty directory after a failed start."""
import os
import subprocess
import sys

import pytest

from dartsfast._io import write_json
from dartsfast.rundir import LOCK_FILE, RunDirectoryBusy, check_output_dir, run_directory
from dartsfast.testing import SUBPROCESS_TIMEOUT_S


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    out = str(tmp_path / "run")
    with run_directory(out):
        assert (tmp_path / "run" / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(RunDirectoryBusy, match=f"in use by another dartsfast run \\(PID {os.getpid()}\\)"):
            with run_directory(out):
                pass
    with run_directory(out):  # released at the end of the block
        pass


def test_the_lock_of_another_process_is_refused_and_a_killed_holders_is_taken_over(tmp_path):
    out = str(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dartsfast.rundir import run_directory\n"
         f"with run_directory({out!r}):\n    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryBusy, match=f"PID {holder.pid}"):
            with run_directory(out):
                pass
    finally:
        holder.kill()  # kill -9: no clean-up runs, the lock file stays with its PID
        holder.wait(timeout=SUBPROCESS_TIMEOUT_S)
    assert (tmp_path / "run" / LOCK_FILE).read_text().strip() == str(holder.pid)
    with run_directory(out):
        assert (tmp_path / "run" / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_temp_files_of_killed_writes_are_removed_and_others_kept(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = [".checkpoint.pt.a1B2c3_d.tmp", ".genotype.json.zzzzzzzz.tmp"]
    kept = ["notes.tmp", ".mine.tmp", "checkpoint.pt"]
    for name in stale + kept:
        (out / name).write_bytes(b"")
    with run_directory(str(out)):
        names = set(os.listdir(out))
    assert not names & set(stale) and set(kept) <= names


def test_a_failed_start_leaves_no_empty_directory_but_keeps_one_that_existed(tmp_path):
    with pytest.raises(RuntimeError):
        with run_directory(str(tmp_path / "new")):
            raise RuntimeError("failed before writing")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with pytest.raises(RuntimeError):
        with run_directory(str(tmp_path / "old")):
            raise RuntimeError("failed before writing")
    assert (tmp_path / "old").is_dir() and os.listdir(tmp_path / "old") == []
    with run_directory(str(tmp_path / "written")):
        write_json(str(tmp_path / "written" / "history.json"), [])
    assert os.listdir(tmp_path / "written") == ["history.json"]


def test_an_out_that_is_or_lies_under_a_file_is_refused_before_anything_is_made(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        check_output_dir(str(f))
    with pytest.raises(ValueError, match="lies under .*file, which is a file"):
        with run_directory(str(f / "a" / "b")):
            pass
    assert f.read_text() == "x"
