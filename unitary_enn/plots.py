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


def plot_panels(x: np.ndarray, panels: Sequence[tuple[str, dict[str, np.ndarray]]], path: str, *,
                xlabel: str, title: str = "", hlines: Sequence[float | None] | None = None) -> None:
  """Several quantities against one x axis, one panel each, stacked (e.g. T, P and a during thermalization).

  Args:
    x: `(T,)` values of the shared axis.
    panels: (ylabel, {label: `(T,)` values}) per panel, top to bottom.
    path: PNG file to write.
    xlabel: label of the shared x axis.
    hlines: per panel, a value to mark with a dotted horizontal line (a target), or None.
  """
  x = np.asarray(x)
  fig, axes = plt.subplots(len(panels), 1, figsize=(6, 2.2 * len(panels)), sharex=True, squeeze=False)
  for k, (ax, (ylabel, curves)) in enumerate(zip(axes[:, 0], panels)):
    for i, (label, values) in enumerate(curves.items()):
      ax.plot(x, np.asarray(values, np.float64), color=f"C{i}", lw=1.0, label=label)
    if hlines is not None and hlines[k] is not None:
      ax.axhline(hlines[k], color="gray", ls=":", lw=0.8)
    ax.set_ylabel(ylabel)
    if len(curves) > 1:
      ax.legend(fontsize=8)
  axes[-1, 0].set_xlabel(xlabel)
  axes[0, 0].set_title(title, fontsize=10)
  _save(fig, path)


_VIEWS = {
    # name: (screen-x axis, screen-y axis, depth axis towards the viewer), orthonormal
    "xy": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "xz": ((1, 0, 0), (0, 0, 1), (0, -1, 0)),
    "yz": ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
}


def _oblique_view(azimuth_deg: float, elevation_deg: float):
  """Screen axes and depth of a camera at (azimuth, elevation) looking at the origin, z up."""
  az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
  towards_viewer = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
  right = np.array([-np.sin(az), np.cos(az), 0.0])
  return tuple(right), tuple(np.cross(towards_viewer, right)), tuple(towards_viewer)


# An oblique view in which all three bars of a cross show, none hiding another.
_VIEWS["iso"] = _oblique_view(30.0, 25.0)


def plot_atom_projections(snapshots: dict[str, np.ndarray], path: str, *, views: Sequence[str] = ("iso", "xy"),
                          title: str = "", centre: np.ndarray | None = None, groups: np.ndarray | None = None,
                          group_names: Sequence[str] | None = None) -> None:
  """Rendered projections of sets of atoms (paper Fig. 13): one row per snapshot, one column per view.

  Atoms are drawn far to near, shaded by depth (stronger colour = nearer), with the same centre and scale in
  every panel so that rows can be compared; atoms far outside the first snapshot's extent (evaporated) are
  clipped. With `groups`, each group gets its own colour (e.g. the three bars of the cross), which makes the
  3-D shape readable in the oblique view.

  Args:
    snapshots: label -> positions `(N, 3)` in A (e.g. "initial", "analytical, step 20,000", "ENN, ...").
    path: PNG file to write.
    views: from "iso" (oblique: azimuth 30 deg, elevation 25 deg), "xy", "xz", "yz".
    centre: `(3,)` A, the point at the middle of every panel (default: the mean of the first snapshot).
    groups: optional `(N,)` ints, the colour group of each atom (same atoms, same order, in every snapshot).
    group_names: legend names of groups 0, 1, ...
  """
  for v in views:
    if v not in _VIEWS:
      raise ValueError(f"unknown view {v!r}; expected one of {sorted(_VIEWS)}")
  items = list(snapshots.items())
  first = np.asarray(items[0][1], np.float64)
  c = first.mean(axis=0) if centre is None else np.asarray(centre, np.float64)
  half = 1.1 * float(np.max(np.abs(first - c))) + 1.0  # A, half the width of every panel
  fig, axes = plt.subplots(len(items), len(views), figsize=(3.4 * len(views), 3.4 * len(items)), squeeze=False)
  for row, (label, pos) in enumerate(items):
    p = np.asarray(pos, np.float64) - c
    size = float(np.clip(2.5e4 / max(len(p), 1), 0.3, 10.0))
    for col, view in enumerate(views):
      ex, ey, ez = (np.asarray(a) for a in _VIEWS[view])
      depth = p @ ez
      order = np.argsort(depth)
      ax = axes[row, col]
      near = np.clip((depth[order] + half) / (2 * half), 0.0, 1.0)[:, None]  # 0 = far, 1 = near
      if groups is None:
        base = np.tile(np.asarray(matplotlib.colors.to_rgb("C0")), (len(order), 1))
      else:
        base = np.asarray([matplotlib.colors.to_rgb(f"C{int(g) % 10}") for g in range(int(np.max(groups)) + 1)])
        base = base[np.asarray(groups)[order]]
      rgb = 1.0 - (0.35 + 0.65 * near) * (1.0 - base)  # far atoms fade towards white
      ax.scatter(p[order] @ ex, p[order] @ ey, c=rgb, s=size, lw=0)
      ax.set_xlim(-half, half)
      ax.set_ylim(-half, half)
      ax.set_aspect("equal")
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title(f"view {view}", fontsize=9)
      if col == 0:
        ax.set_ylabel(label, fontsize=9)
  if groups is not None and group_names:
    handles = [plt.Line2D([], [], ls="", marker="o", color=f"C{g % 10}", label=name)
               for g, name in enumerate(group_names)]
    axes[0, -1].legend(handles=handles, fontsize=7, loc="lower right", framealpha=0.8)
  if title:
    fig.suptitle(title, fontsize=10)
  _save(fig, path)
