"""The channels_first layout tests, where this process cannot run them: TensorFlow's CPU
convolution takes NCHW only through oneDNN, which it turns on by default on some x86 CPUs
alone. They run here in one process with ``TF_ENABLE_ONEDNN_OPTS=1``; where this process
runs them itself (``conftest.channels_first_runs_here``), there is nothing to add."""
import os
import subprocess
import sys

import pytest

from conftest import REPO, channels_first_runs_here

# one oneDNN interpreter running the layout tests: CI's slow step
pytestmark = pytest.mark.slow

TESTS = ["tests/test_cifar_resnet.py::test_equals_the_original_forward_pass",
         "tests/test_cifar_resnet.py::test_data_formats_give_the_same_outputs_with_the_same_weights",
         "tests/test_models.py::test_both_data_formats_give_the_same_outputs",
         "tests/test_resnet.py::test_data_formats_and_batch_norms_agree"]


def test_channels_first_layouts_agree_in_a_onednn_process():
    if channels_first_runs_here():
        return  # they ran in this process, unskipped
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rs", *TESTS], cwd=REPO, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1"))
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0 and "skipped" not in summary and " passed" in summary, (
        proc.stdout[-3000:] + proc.stderr[-2000:])
