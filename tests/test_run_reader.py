"""``tinynet.run_reader``: the one reader of a run directory, without TensorFlow, as evaluation,
reports, tuning and the writer itself use it; damaged files are named in one line."""
import json
import subprocess
import sys

import pytest

from tinynet.errors import TinynetError
from tinynet.run_reader import RunReader

HISTORY = ("stage,resolution,epoch,global_epoch,lr,loss,accuracy,top5,val_loss,val_accuracy,"
           "val_top5,seconds\n1,32,1,1,0.1,2.0,0.25,0.5,2.1,0.3,0.6,1.5\n"
           "1,32,2,2,0.1,1.5,0.5,0.75,1.6,,0.7,1.25\n")


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": "m", "seed": 3}))
    (tmp_path / "state.json").write_text(json.dumps({"status": "running"}))
    (tmp_path / "history.csv").write_text(HISTORY)
    (tmp_path / "lr.csv").write_text("iteration,global_epoch,lr\n0,1,0.1\n1,1,0.05\n")
    return tmp_path


def test_reads_every_file_a_run_writes(run_dir):
    reader = RunReader(run_dir)
    assert reader.has_config() and reader.read_config() == {"model": "m", "seed": 3}
    assert reader.read_state() == {"status": "running"}
    rows = reader.history_rows()
    assert [r["global_epoch"] for r in rows] == [1.0, 2.0]
    assert rows[1]["val_accuracy"] is None and rows[0]["val_accuracy"] == 0.3
    frame = reader.read_history()
    assert list(frame["loss"]) == [2.0, 1.5]
    assert reader.read_lr() == [(0, 1, 0.1), (1, 1, 0.05)]
    assert reader.read_json("evaluation.json", required=False) is None
    assert reader.parameter_count() == (None, None)  # no saved model


@pytest.mark.parametrize("name, content, reason", [
    ("history.csv", b"\x89PNG\r\n\x1a\n\x00\xff\xfe junk", "UnicodeDecodeError"),
    ("config.json", b'{"model": ', "JSONDecodeError"),
    ("state.json", b"[1, 2]", "holds a list, not a JSON object"),
    ("lr.csv", b"iteration,global_epoch,lr\n0,one,0.1\n", "ValueError"),
])
def test_a_damaged_file_is_named_in_one_line(run_dir, name, content, reason):
    (run_dir / name).write_bytes(content)
    reader = RunReader(run_dir)
    read = {"history.csv": reader.read_history, "config.json": reader.read_config,
            "state.json": reader.read_state, "lr.csv": reader.read_lr}[name]
    with pytest.raises(TinynetError) as info:
        read()
    message = str(info.value)
    assert "\n" not in message and str(run_dir / name) in message and reason in message
    assert "is unreadable" in message and message.endswith("the run directory is damaged")


def test_the_writer_reads_as_the_reader_and_says_what_to_do(run_dir):
    from tinynet.training.rundir import RunDirectory

    (run_dir / "config.json").write_text("{")
    with pytest.raises(TinynetError, match=r"config\.json \(the run's record\) is unreadable "
                                           r".*; restore it, or pass --restart"):
        RunDirectory(run_dir).read_config()
    assert RunDirectory(run_dir).read_lr() == RunReader(run_dir).read_lr()


def test_reading_a_run_starts_no_tensorflow(run_dir):
    code = ("import sys; from tinynet.run_reader import RunReader; "
            "from tinynet.evaluation.reports import ours; "
            f"r = RunReader({str(run_dir)!r}); r.read_config(); r.history_rows(); "
            f"ours({str(run_dir)!r}); print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.split() == ["False", "False"]
