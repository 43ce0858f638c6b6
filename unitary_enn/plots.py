"""The figures of the paper, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_loss(curves: dict[str, Sequence[dict]], path: str, title: str = "") -> None:
  """Training and validation loss vs step (paper Fig. 2 and 4), log-log.

  Args:
    curves: label -> history records with "step", "train_loss", "val_loss" (as written by `training.train`).
    path: PNG file to write.
  """
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, (label, hist) in enumerate(curves.items()):
    steps = np.array([r["step"] for r in hist])
    color = f"C{i}"
    ax.plot(steps, [r["train_loss"] for r in hist], color=color, label=f"{label} training")
    ax.plot(steps, [r["val_loss"] for r in hist], color=color, ls="--", label=f"{label} validation")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("loss (MSE, standardized units)")
  ax.set_title(title)
  ax.legend(fontsize=8)
  _save(fig, path)


def plot_parity(target: np.ndarray, predicted: np.ndarray, path: str, rmse: float | None = None,
                unit: str = "eV/A", title: str = "") -> None:
  """Predicted vs reference values, every component (paper Fig. 3 and 10)."""
  t, p = np.ravel(target), np.ravel(predicted)
  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  ax.scatter(t, p, s=2, alpha=0.4, lw=0)
  lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
  ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
  ax.set_xlabel(f"reference ({unit})")
  ax.set_ylabel(f"predicted ({unit})")
  text = title + (f"\nRMSE {rmse:.3g} {unit}" if rmse is not None else "")
  ax.set_title(text.strip(), fontsize=10)
  ax.set_aspect("equal")
  _save(fig, path)


def plot_vs_step(steps: np.ndarray, curves: dict[str, np.ndarray], path: str, *, ylabel: str,
                 title: str = "", logy: bool = False, marks: Sequence[int] = (),
                 styles: dict[str, str] | None = None, colors: dict[str, str] | None = None,
                 xlabel: str = "MD step") -> None:
  """One or more quantities against the MD step (paper Fig. 5-8 and 14).

  Args:
    steps: `(T,)` step numbers.
    curves: label -> `(T,)` values (non-positive values are dropped on a log axis).
    path: PNG file to write.
    ylabel: axis label with the unit, e.g. "position RMSD (A)".
    logy: logarithmic y axis (for errors that grow over orders of magnitude).
    marks: steps to mark with a dotted vertical line (e.g. the paper's 1,500 and 4,000).
    styles: label -> matplotlib line style ("-", "--", ":"); default solid.
    colors: label -> matplotlib color, so a run keeps its color across figures; default C0, C1, ...
    xlabel: x axis label.
  """
  steps = np.asarray(steps)
  styles, colors = styles or {}, colors or {}
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, (label, values) in enumerate(curves.items()):
    values = np.asarray(values, np.float64)
    if logy:
      values = np.where(values > 0, values, np.nan)
    ax.plot(steps, values, color=colors.get(label, f"C{i}"), ls=styles.get(label, "-"), lw=1.2, label=label)
  for m in marks:
    ax.axvline(m, color="gray", ls=":", lw=0.8)
  if logy:
    ax.set_yscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  if len(curves) > 1:
    ax.legend(fontsize=8)
  _save(fig, path)


def plot_learning_curve(curve: dict, labels: dict[str, str], path: str, unit: str = "eV/A") -> None:
  """Test error vs number of training samples, log-log (data efficiency).

  Args:
    curve: {"sizes": [n, ...], model: [rmse at each n, ...], ...}.
    labels: model key -> legend label; only these models are drawn.
  """
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for key, label in labels.items():
    ax.plot(curve["sizes"], curve[key], "o-", label=label)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("training configurations")
  ax.set_ylabel(f"test force RMSE ({unit})")
  ax.set_title("Data efficiency at equal optimizer budget")
  ax.legend()
  _save(fig, path)
