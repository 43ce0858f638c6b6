"""What every experiment binary shares: flag handling, the data cache, dtype set-up, error figures, the model a
binary drives."""

from __future__ import annotations

import os
import re
import sys

from absl import app, flags


def parse_flags(argv):
  """absl's flag parsing, but a bad `--config.KEY` stops with one clear line instead of a traceback.

  Only errors raised while parsing flags are caught here; errors of the experiment itself propagate.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.stderr.write(f"error: {e}\nPass --helpfull to see the flags.\n")
    sys.exit(2)
  except (AttributeError, KeyError) as e:
    # ml_collections raises these for a key that the (locked) config does not have, as an AttributeError wrapping a
    # KeyError whose text is "'key'\nDid you mean ...?": unwrap it, so that no repr quoting reaches the user.
    inner = e
    while inner.args and isinstance(inner.args[0], BaseException):
      inner = inner.args[0]
    text = str(inner.args[0]) if inner.args else str(inner)
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    names = re.findall(r"'([^'\\]+)'", text) or [text.splitlines()[0] if text else "?"]
    hint = " ".join(line.strip() for line in text.splitlines()[1:] if line.strip())
    culprit = [a for a in overrides if names[0] in a]
    sys.stderr.write(f"error: unknown config key {names[0]!r} in {culprit[0] if culprit else ' '.join(overrides)}"
                     f"{f' ({hint})' if hint else ''}: check the spelling against the config file (--helpfull lists "
                     "the keys)\n")
    sys.exit(2)


def run_app(main) -> None:
  """`absl.app.run(main)` with `parse_flags`."""
  app.run(main, flags_parser=parse_flags)


RESULTS = "results.json"


def prepare_workdir(workdir: str) -> str:
  """Make `workdir` (and check that it is writable) before any data is generated; returns it."""
  from unitary_enn import files
  files.check_writable(workdir)
  return workdir


def cache_dir(config) -> str:
  """The data cache folder: config.cache_dir, else $UENN_CACHE_DIR, else ~/.cache/unitary_enn."""
  return (config.get("cache_dir") or os.environ.get("UENN_CACHE_DIR")
          or os.path.join(os.path.expanduser("~"), ".cache", "unitary_enn"))


def setup_dtype(config):
  """Turn on 64-bit JAX when the config asks for float64; returns the JAX dtype."""
  import jax
  if config.dtype not in ("float32", "float64"):
    raise ValueError(f"config.dtype must be 'float32' or 'float64', got {config.dtype!r}")
  if config.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp
  return jnp.dtype(config.dtype)


def force_rmse(pred, target) -> float:
  """Root mean square of the force error over all components, in the units of the inputs (eV/A)."""
  import numpy as np
  return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2)))


def experiment_main(name: str, train_and_evaluate, extra_flags=None, config_name: str | None = None) -> None:
  """Define the standard flags and run `train_and_evaluate(config, workdir)` as an absl program.

  Flags are defined here, when a binary runs, not when its module is imported, so that one process (a test,
  another experiment) can import several experiment modules. Standard flags: --config (default
  experiments/configs/CONFIG_NAME.py, CONFIG_NAME defaulting to NAME, `path:variant` picks a variant, --config.KEY=VALUE overrides) and --workdir
  (default workdirs/NAME). `extra_flags()` may define more and return a dict of keyword arguments for
  `train_and_evaluate`, read after parsing.
  """
  from absl import flags
  from ml_collections import config_flags

  here = os.path.dirname(os.path.abspath(__file__))
  config = config_flags.DEFINE_config_file(
      "config", os.path.join(here, "configs", f"{config_name or name}.py"), "Experiment config (path[:variant]).",
      lock_config=True)
  workdir = flags.DEFINE_string("workdir", os.path.join("workdirs", name),
                                "Where results, figures and checkpoints go.")
  extra = extra_flags() if extra_flags else {}

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    kwargs = {k: v.value for k, v in extra.items()}
    train_and_evaluate(config.value, workdir.value, **kwargs)

  run_app(main)


def check_model_flag(path: str | None, flag: str, trained_by: str, variant: str = "") -> None:
  """A workdir given for a model (`--FLAG=path`) must hold one: a usage error otherwise, not a retraining."""
  from unitary_enn import models
  if path and not os.path.exists(os.path.join(path, models.MODEL_FILE)):
    if os.path.exists(os.path.join(path, models.LEGACY_MODEL_FILE)):
      models.load_model(path)  # raises the error that explains the conversion
    config = f" --config=experiments/configs/{trained_by}.py:{variant}" if variant else ""
    raise app.UsageError(
        f"no trained model in --{flag}={path!r} (expected {models.MODEL_FILE}): train one with "
        f"python -m experiments.{trained_by}{config} --workdir={path}, or leave --{flag} out to "
        "train the config's model here first")


def with_trained_model(run, trained_by: str, conservative: bool = False):
  """`main(config, workdir, train_workdir=None[, conservative_workdir=None])` for a binary that drives a model
  trained by `trained_by` (and, with `conservative`, a conservative one too).

  A model comes from its flag, else the config key of the same name; when both are empty, `run` trains the quick
  one itself. A given workdir without a model is a usage error, not a retraining.
  """
  def main(config, workdir: str, train_workdir: str | None = None, conservative_workdir: str | None = None):
    check_model_flag(train_workdir or config.train_workdir, "train_workdir", trained_by)
    if not conservative:
      return run(config, workdir, train_workdir)
    check_model_flag(conservative_workdir or config.conservative_workdir, "conservative_workdir", trained_by,
                     "conservative")
    return run(config, workdir, train_workdir, conservative_workdir)
  return main


def train_workdir_flag(trained_by: str, conservative: bool = False):
  """The `extra_flags` of `experiment_main` for binaries built with `with_trained_model`."""
  def define():
    from absl import flags
    out = dict(train_workdir=flags.DEFINE_string(
        "train_workdir", None, f"Workdir of a {trained_by} training run (model.npz); overrides "
        "config.train_workdir. Without either, config.train_config is trained first in <workdir>/train."))
    if conservative:
      out["conservative_workdir"] = flags.DEFINE_string(
          "conservative_workdir", None, f"Workdir of a conservative {trained_by} training run (forces = -grad E); "
          "overrides config.conservative_workdir. Without either, config.conservative_train_config is trained "
          "first in <workdir>/train_conservative.")
    return out
  return define


def train_model(trained_by: str, variant: str, train_dir: str) -> None:
  """Train `experiments.<trained_by>` with config variant `variant` into `train_dir`, in this process.

  Its progress lines show, and a killed training resumes from its checkpoint when run again.
  """
  import importlib
  module = importlib.import_module(f"experiments.{trained_by}")
  configs = importlib.import_module(f"experiments.configs.{trained_by}")
  module.train_and_evaluate(configs.get_config(variant), train_dir)


def trained_model(config, workdir: str, train_workdir: str | None, *, trained_by: str, caller: str,
                  minutes: int, forces: str | None = None, flag: str = "train_workdir", subdir: str = "train",
                  train_config: str | None = None) -> dict:
  """The model an MD binary drives: from `train_workdir` (or `config.<flag>`), else trained first.

  With neither given, the model lives in `<workdir>/<subdir>`: reused when a finished one is there, else trained
  with `train_config` (default `config.train_config`; `train_model`). Its kind must be `trained_by`, and its
  forces `forces` ("direct" or "conservative") when given.

  Returns:
    dict(model=the `models.Model`, train_workdir, trained_here, train_time_s, train_results=its results.json
    or {}).
  """
  import time

  from unitary_enn import files, models
  train_workdir = train_workdir or config[flag]
  train_config = train_config or config.train_config
  trained_here, train_time = False, 0.0
  if not train_workdir:
    train_workdir = os.path.join(workdir, subdir)
    trained_here = True
    if os.path.exists(os.path.join(train_workdir, models.MODEL_FILE)):
      print(f"{caller}: no --{flag} given; reusing the model trained earlier in {train_workdir}",
            flush=True)
    else:
      print(f"{caller}: no --{flag} given, so training the {train_config!r} model first "
            f"(experiments.{trained_by}) in {train_workdir}; the quick one takes ~{minutes} minutes on 2 CPU "
            "cores", flush=True)
      t0 = time.time()
      train_model(trained_by, train_config, train_workdir)
      train_time = time.time() - t0
  model = models.load_model(train_workdir)
  if model.kind != trained_by:
    raise ValueError(f"{flag} {train_workdir!r} holds a {model.kind!r} model; this experiment "
                     f"needs a {trained_by} model (python -m experiments.{trained_by})")
  if forces is not None and model.forces != forces:
    variant = "conservative" if forces == "conservative" else "quick"
    raise ValueError(f"{flag} {train_workdir!r} holds a model with {model.forces} forces; --{flag} needs one with "
                     f"{forces} forces (python -m experiments.{trained_by} "
                     f"--config=experiments/configs/{trained_by}.py:{variant})")
  results_path = os.path.join(train_workdir, RESULTS)
  train_results = files.read_json(results_path) if os.path.exists(results_path) else {}
  return dict(model=model, train_workdir=train_workdir, trained_here=trained_here, train_time_s=train_time,
              train_results=train_results)


def conservative_model(config, workdir: str, conservative_workdir: str | None, *, trained_by: str, caller: str,
                       minutes: int) -> dict | None:
  """The optional conservative model of an MD binary (`trained_model` with forces="conservative"), or None.

  The run is opt-in: it happens when `conservative_workdir` (the flag), `config.conservative_workdir` or
  `config.conservative_train_config` (train one in `<workdir>/train_conservative`) is given, because training a
  conservative model takes far longer than the direct one.
  """
  if not (conservative_workdir or config.conservative_workdir or config.conservative_train_config):
    return None
  return trained_model(config, workdir, conservative_workdir, trained_by=trained_by, caller=caller, minutes=minutes,
                       forces="conservative", flag="conservative_workdir", subdir="train_conservative",
                       train_config=config.conservative_train_config)
