"""Numbers the code cannot use are refused where they enter (issue 12): non-finite values and
out-of-range seeds at the flag, with the accepted range in the message; widths that leave a
layer under one filter in the model builders, naming the smallest width that works; and a model
tinynet saved, loaded without ``import tinynet``, says to import it."""
import argparse
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, load_file, run_script
from tinynet.errors import TinynetError
from tinynet.experiment import (checkpoint_interval, non_negative_float, non_negative_int,
                                number_in, parse_interval, positive_float, positive_int,
                                random_seed)

NON_FINITE = ["inf", "-inf", "nan", "Infinity", "1e400"]  # (1e400 overflows to inf)


# -- the flag parsers -----------------------------------------------------------------------------

@pytest.mark.parametrize("text", NON_FINITE)
@pytest.mark.parametrize("parse,accepted", [(positive_float, "a finite number > 0"),
                                            (non_negative_float, "a finite number >= 0")])
def test_float_flags_refuse_non_finite_numbers_naming_the_range(parse, accepted, text):
    with pytest.raises(argparse.ArgumentTypeError) as e:
        parse(text)
    assert f"got {text!r}" in str(e.value) and f"(accepted: {accepted})" in str(e.value)


def test_float_flags_keep_accepting_their_range():
    assert positive_float("1e-3") == 0.001 and positive_float("1e300") == 1e300
    assert non_negative_float("0") == 0.0
    for text in ("0", "-1", "-0.0"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"expected a positive number"):
            positive_float(text)


@pytest.mark.parametrize("parse,text,accepted", [
    (positive_int, "inf", "an integer >= 1"), (positive_int, "0", "an integer >= 1"),
    (positive_int, "2.5", "an integer >= 1"), (non_negative_int, "nan", "an integer >= 0"),
    (non_negative_int, "-1", "an integer >= 0")])
def test_integer_flags_name_their_range(parse, text, accepted):
    with pytest.raises(argparse.ArgumentTypeError, match=rf"\(accepted: {accepted}\)"):
        parse(text)


@pytest.mark.parametrize("text", ["-1", str(2 ** 32), str(2 ** 64), "nan", "inf", "1.5"])
def test_seeds_outside_what_numpy_and_tensorflow_take_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError) as e:
        random_seed(text)
    assert "expected a seed" in str(e.value) and "[0, 2**32-1]" in str(e.value)
    assert "4294967295" in str(e.value)


def test_the_whole_seed_range_is_accepted():
    import numpy as np

    assert random_seed("0") == 0 and random_seed(str(2 ** 32 - 1)) == 2 ** 32 - 1
    np.random.seed(random_seed(str(2 ** 32 - 1)))  # the largest one NumPy takes


def test_number_in_states_a_bounded_range():
    rate = number_in("a dropout rate", 0, 1, high_open=True)
    assert rate("0") == 0 and rate("0.5") == 0.5
    for text in ("1", "-0.1", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError,
                           match=r"expected a dropout rate, got .* \(accepted: a finite number "
                                 r"in \[0, 1\)\)"):
            rate(text)


@pytest.mark.parametrize("text", ["infm", "nans", "-infh", "infsteps", "nansteps", "1e400s",
                                  "0.5steps", "-5m"])
def test_checkpoint_intervals_must_be_finite_and_positive(text):
    with pytest.raises(ValueError, match=r"accepted: a finite duration > 0, or a whole number "
                                         r"of steps >= 1"):
        parse_interval(text)
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected a duration"):
        checkpoint_interval(text)


def test_checkpoint_intervals_still_parse():
    assert parse_interval("10m") == ("seconds", 600.0)
    assert parse_interval("500steps") == ("steps", 500)
    assert parse_interval("off") is None


# -- the tools' flags (parsed in this process: argparse exits 2 before anything runs) ------------

def _tool(name):
    return load_file("tools", name, "bad_input")


@pytest.mark.parametrize("tool,argv,message", [
    ("tune", ["--seed", "-1"], "argument --seed: expected a seed, got '-1'"),
    ("tune", ["--seed", str(2 ** 32)], "[0, 2**32-1]"),
    ("tune", ["--epochs-scale", "nan"], "argument --epochs-scale: expected a positive number"),
    ("preview_augmentations", ["--recipe", "all", "--seed", "4294967296"],
     "argument --seed: expected a seed, got '4294967296'"),
    ("benchmark", ["train", "--width", "inf"],
     "argument --width: expected a positive number, got 'inf' (accepted: a finite number > 0)"),
    ("benchmark", ["parallel", "--width", "nan"], "argument --width: expected a positive number"),
])
def test_tool_flags_refuse_numbers_the_code_cannot_use(tool, argv, message, capsys):
    module = _tool(tool)
    entry = module.parse_args if hasattr(module, "parse_args") else module.main
    with pytest.raises(SystemExit) as e:
        entry(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and message in err, err


# -- widths too small for a model: refused by the builder -----------------------------------------

@pytest.mark.parametrize("name,kwargs,label,bound,example", [
    ("densenet_model1", {}, "densenet_model1", "0.015625", "0.016"),
    ("densenet_model2", {}, "densenet_model2", "0.015625", "0.016"),
    ("resnet18", {}, "resnet18", "0.0078125", "0.0079"),
    ("nyu_resnet24", {}, "ResNet-24", "0.0078125", "0.0079"),
    ("cifar_resnet", {"channels": (8, 16, 32, 64)}, "ResNet-24", "0.0625", "0.063"),
    ("multi_resnet", {"depth": 8, "k": 1}, "Multi-ResNet", "0.03125", "0.032"),
])
def test_a_width_that_leaves_a_layer_without_filters_names_the_smallest_that_works(
        name, kwargs, label, bound, example):
    from tinynet.models import get_model

    with pytest.raises(TinynetError) as e:
        get_model(name, width=0.001, num_classes=3, **kwargs)
    message = str(e.value)
    assert message.startswith(f"width 0.001 is too small for {label}")
    assert f"the smallest width that works for {label} is anything above {bound} " \
           f"(e.g. {example})" in message
    for bad in (float("inf"), float("nan"), 0, -1.0):
        with pytest.raises(TinynetError, match=r"width must be a positive number \(finite, > 0"):
            get_model(name, width=bad, num_classes=3, **kwargs)


def test_the_smallest_width_named_builds_and_the_bound_itself_does_not():
    from tinynet.models import get_model

    model = get_model("multi_resnet", depth=8, k=1, width=0.032, num_classes=3)
    assert model.get_layer("stem_conv").filters == 1  # round(16 * 0.032) = 1
    with pytest.raises(TinynetError, match="too small"):  # round(16 * 0.03125) = round(0.5) = 0
        get_model("multi_resnet", depth=8, k=1, width=0.03125, num_classes=3)


# -- end to end: one line, exit 2, no run directory -----------------------------------------------

def _one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


def test_an_out_of_range_seed_stops_the_script_at_the_flag(tmp_path):
    proc = run_script("densenet_model1.py", "--seed", "-1", "--run-dir", tmp_path / "run",
                      check=False)
    line = _one_error_line(proc)
    assert proc.stderr.count("\n") == 1
    assert line.startswith("densenet_model1.py: error: argument --seed: expected a seed, got '-1'")
    assert "[0, 2**32-1]" in line and not (tmp_path / "run").exists()


def test_a_width_too_small_for_the_model_is_one_line_from_the_builder(quick_data_dir, tmp_path):
    proc = run_script("densenet_model1.py", "--quick", "--width", "0.001", "--data-dir",
                      quick_data_dir, "--run-dir", tmp_path / "run", check=False)
    line = _one_error_line(proc)
    assert line.startswith("error: width 0.001 is too small for densenet_model1")
    assert "anything above 0.015625" in line
    assert not (tmp_path / "run").exists()  # the runner's write probe creates nothing


# -- a saved model loaded without tinynet says to import it ---------------------------------------

@pytest.mark.slow  # (a fresh interpreter: CI's slow step)
def test_a_saved_model_loaded_without_tinynet_says_to_import_it(tmp_path):
    import numpy as np

    from tinynet.models import get_model

    model = get_model("densenet_model1", num_classes=3, width=0.0625, input_shape=(16, 16, 3))
    path = tmp_path / "model.keras"
    model.save(path)
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    # a fresh interpreter that can import tinynet but has not: the load fails and says what to
    # do; after `import tinynet` the same file loads and predicts as the saved model did
    code = textwrap.dedent(f"""
        import sys, numpy as np, keras
        try:
            keras.models.load_model({str(path)!r})
        except Exception as e:
            print("FAILED:", str(e).replace("\\n", " "))
        else:
            print("LOADED")
        assert "tinynet" not in sys.modules
        import tinynet
        loaded = keras.models.load_model({str(path)!r})
        y = loaded.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)
        print("EQUAL" if np.allclose(y, np.load({str(tmp_path / 'y.npy')!r}), atol=1e-6) else "DIFF")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].startswith("FAILED: ") and "Could not locate class 'SpaceToDepth'" in out[0]
    assert "import tinynet before keras.models.load_model: it registers tinynet>SpaceToDepth" \
        in out[0]
    assert out[-1] == "EQUAL"


def test_the_requirement_stays_out_of_rebuilt_objects():
    from tinynet.layers import SpaceToDepth
    from tinynet.saving import REQUIRES_KEY
    from tinynet.training.optimizers import CoupledAdam

    layer = SpaceToDepth(2, name="s2d")
    config = layer.get_config()
    assert "import tinynet" in config[REQUIRES_KEY]
    clone = SpaceToDepth.from_config(config)
    assert clone.block_size == 2 and clone.get_config() == config
    optimizer = CoupledAdam(weight_decay=0.1)
    again = CoupledAdam.from_config(optimizer.get_config())
    assert type(again) is CoupledAdam and again.get_config() == optimizer.get_config()
    legacy = {k: v for k, v in config.items() if k != REQUIRES_KEY}  # a file saved before
    assert SpaceToDepth.from_config(legacy).block_size == 2
