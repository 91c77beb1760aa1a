"""The evaluation report: eval.json, report.md, PNG plots and an overlay video.

The Markdown puts the overall table first (what a reader wants), then live-replay figures
when there are any, then per-sequence tables and the plots.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from saliency_ros.evaluation.metrics import SODSummary  # noqa: E402

OVERALL_COLUMNS = (("fbeta_max", "F-max"), ("fbeta_mean", "F-mean"), ("fbeta_adaptive", "F-adp"),
                   ("mae", "MAE"), ("smeasure", "S"), ("emeasure_mean", "E-mean"), ("cc", "CC"),
                   ("sim", "SIM"), ("nss", "NSS"), ("auc_judd", "AUC-J"), ("frames", "frames"))
BOX_COLUMNS = (("pointing_hit_rate", "pointing hit rate"), ("box_nss", "box-NSS"),
               ("box_frames", "frames in view"), ("box_out_of_view", "out of view"))
MASK_COLUMNS = (("iou", "IoU"), ("precision", "precision"), ("recall", "recall"),
                ("fbeta", "F-beta"), ("frames", "frames"))
LABELS = {"sst": "/saliency (saliency_node)", "sod": "SOD net probability (objects_node)",
          "sod_mask": "SOD mask (objects_node)", "spectral_residual": "OpenCV SpectralResidual",
          "fine_grained": "OpenCV FineGrained", "binwang_motion": "OpenCV BinWang motion",
          "centre_prior": "centre prior (Gaussian)"}


class OverlayVideo:
    """Frames to an MP4 (OpenCV, mp4v) or an animated GIF (Pillow), chosen by the suffix.
    A GIF keeps at most `gif_fps` frames per second, each at most `gif_width` pixels wide,
    so that it stays small enough to sit in a README."""

    def __init__(self, path: Path, fps: float, gif_width: int = 320, gif_fps: float = 10.0) -> None:
        if path.suffix.lower() not in (".mp4", ".gif"):
            raise ValueError(f"overlay video must end in .mp4 or .gif, got {path.name}")
        self.path, self.fps, self.gif_width = path, fps, gif_width
        self._every = max(1, int(np.ceil(fps / gif_fps)))
        self._writer: Any = None
        self._gif: list[Any] = []
        self.frames = 0

    def __call__(self, frame_bgr: np.ndarray) -> None:
        self.frames += 1
        if self.path.suffix.lower() == ".gif":
            from PIL import Image

            if (self.frames - 1) % self._every:
                return

            h, w = frame_bgr.shape[:2]
            if w > self.gif_width:
                frame_bgr = cv2.resize(frame_bgr, (self.gif_width, round(h * self.gif_width / w)),
                                       interpolation=cv2.INTER_AREA)
            self._gif.append(Image.fromarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)))
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = frame_bgr.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write {self.path}")
        self._writer.write(frame_bgr)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
        if self._gif:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._gif[0].save(self.path, save_all=True, append_images=self._gif[1:],
                              duration=round(1000 * self._every / self.fps), loop=0, optimize=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _table(rows: list[tuple[str, dict[str, Any]]], columns: tuple[tuple[str, str], ...],
           first: str = "method") -> list[str]:
    head = f"| {first} | " + " | ".join(c[1] for c in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(values.get(k, "")) for k, _ in columns) + " |")
    return lines


def plot_pr_curves(summaries: dict[str, SODSummary], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, s in summaries.items():
        ax.plot(s.recall, s.precision, label=f"{LABELS.get(name, name)} (F-max {s.fm_curve.max():.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="Precision-recall over 256 thresholds (mean over frames)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sequences(methods: dict[str, Any], path: Path, metric: str = "fbeta_max") -> None:
    scored = {m: e for m, e in methods.items() if e.get("sequences") and e["kind"] != "mask"}
    if not scored:
        return
    seqs = sorted({s for e in scored.values() for s in e["sequences"]})
    width = 0.8 / len(scored)
    fig, ax = plt.subplots(figsize=(max(6, len(seqs) * 0.9), 4.5))
    x = np.arange(len(seqs))
    for i, (m, e) in enumerate(scored.items()):
        vals = [e["sequences"].get(s, {}).get(metric, np.nan) for s in seqs]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=LABELS.get(m, m))
    ax.set_xticks(x, seqs, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel=metric, ylim=(0, 1), title=f"{metric} per sequence")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_latency(latency_ms: dict[str, list[float]], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    hi = max((np.percentile(v, 99.5) for v in latency_ms.values() if v), default=1.0)
    bins = np.linspace(0, hi * 1.05, 60)
    for name, values in latency_ms.items():
        if values:
            ax.hist(np.clip(values, 0, bins[-1]), bins=bins, alpha=0.55,
                    label=f"{LABELS.get(name, name)}: p50 {np.median(values):.1f} ms")
    ax.set(xlabel="ms per frame", ylabel="frames", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(result: dict[str, Any], out: Path, summaries: dict[str, SODSummary],
                 latency_ms: dict[str, list[float]], command: str) -> Path:
    """eval.json, report.md and the plots under `out`; returns the Markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    order = list(LABELS)  # ours first, then the baselines, in a fixed order
    methods = dict(sorted(result["methods"].items(),
                          key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    plots: list[tuple[str, str]] = []
    if any("box_nss" in e.get("overall", {}) for e in methods.values()):
        plot_sequences(methods, out / "sequences_boxes.png", "pointing_hit_rate")
        plots.append(("Pointing-game hit rate per sequence", "sequences_boxes.png"))
    if summaries:
        plot_pr_curves(summaries, out / "pr_curves.png")
        plot_sequences(methods, out / "sequences.png")
        plots += [("Precision-recall", "pr_curves.png"), ("F-max per sequence", "sequences.png")]
    if latency_ms:
        title = ("End-to-end latency (publish -> output received)" if result["mode"] == "live"
                 else "Per-frame compute time (decode checks excluded)")
        plot_latency(latency_ms, out / "latency.png", title)
        plots.append(("Latency", "latency.png"))

    md = [f"# saliency_ros evaluation ({result['mode']})", "", f"Command: `{command}`", "",
          f"Bags: {', '.join(result['bags'])}; {result['frames']} frames."]
    if result.get("models"):  # which files ran: the labels name nodes, the nodes' parameters name models
        md.append("Models: " + ", ".join(f"{LABELS.get(m, m).split(' (')[0]} `{Path(e['file']).name}` ({e['input']}"
                                         + (f", motion prior {e['motion_prior']:g}" if e.get("motion_prior") else "")
                                         + (", mirror-averaged" if e.get("mirror_average") else "") + ")"
                                         for m, e in result["models"].items()) + ".")
    if result.get("skipped_frames"):
        md.append(f"Frames refused by the decoder (not scored): {result['skipped_frames']}.")
    maps = [(LABELS.get(m, m), e["overall"]) for m, e in methods.items()
            if e.get("overall", {}).get("fbeta_max") is not None and e["kind"] != "mask"]
    boxed = [(LABELS.get(m, m), e["overall"]) for m, e in methods.items()
             if e.get("overall", {}).get("pointing_hit_rate") is not None]
    masks = [(LABELS.get(m, m), e["overall"]) for m, e in methods.items() if e.get("overall") and e["kind"] == "mask"]
    if maps:
        md += ["", "## Overall", "", "Maps against the masks (F-beta with beta^2 = 0.3; CC, SIM, NSS, "
               "AUC-Judd with mask pixels as fixations):", "", *_table(maps, OVERALL_COLUMNS)]
    if boxed:
        md += ["", "## Target boxes", "", "Pointing game: the map's peak inside the target box grown by "
               "8 px; box-NSS: mean z-scored map inside the box. Frames with the target out of view "
               "are not scored.", "", *_table(boxed, BOX_COLUMNS)]
    if masks:
        md += ["", "Binary masks:", "", *_table(masks, MASK_COLUMNS)]
    timed = [(LABELS.get(m, m), e["latency_ms"]) for m, e in methods.items() if e.get("latency_ms")]
    if timed and result["mode"] == "live":
        md += ["", "## End-to-end latency (frame published -> output received)", "",
               "| output | p50 ms | p95 ms | mean ms | frames |", "|---|---|---|---|---|"]
        md += [f"| {n} | {t['p50']:.2f} | {t['p95']:.2f} | {t['mean']:.2f} | {t['calls']} |" for n, t in timed]
    elif timed:
        md += ["", "## Speed (one frame at a time, this machine)", "",
               "| method | p50 ms | p95 ms | mean ms | FPS | frames |", "|---|---|---|---|---|---|"]
        md += [f"| {n} | {t['p50']:.2f} | {t['p95']:.2f} | {t['mean']:.2f} | {t['fps']:.1f} | {t['calls']} |"
               for n, t in timed]
    if result["mode"] == "live":
        md += ["", "## Live replay", ""]
        for topic, t in result["topics"].items():
            if not t["expected"] and not t["received"]:
                md.append(f"- `{topic}`: not scored (switched off)")
                continue
            md.append(f"- `{topic}`: {t['received']} of {t['expected']} expected outputs, "
                      f"{t['dropped']} dropped, {t['output_rate_hz']:.1f} Hz out"
                      + (f", end-to-end p50 {t['latency_ms']['p50']:.1f} ms / p95 {t['latency_ms']['p95']:.1f} ms"
                         if t.get("latency_ms") else ""))
        if result["play"] == "self":
            md.append(f"- published {result['published']} frames at rate factor {result['rate']} "
                      f"in {result['replay_s']:.1f} s")
        else:
            md.append(f"- received {result['published']} of the bag's {result['frames']} frames on the "
                      f"camera topic ({result['inputs_missing']} never arrived) in {result['replay_s']:.1f} s")
    for m, e in methods.items():
        if e.get("sequences"):
            first = next(iter(e["sequences"].values()))
            cols = (MASK_COLUMNS if e["kind"] == "mask" else
                    (OVERALL_COLUMNS if "fbeta_max" in first else ()) + (BOX_COLUMNS if "box_nss" in first else ()))
            md += ["", f"### {LABELS.get(m, m)} per sequence", "",
                   *_table(sorted(e["sequences"].items()), cols, "sequence")]
    for title, name in plots:
        md += ["", f"## {title}", "", f"![{title}]({name})"]
    if result.get("overlay"):
        name = Path(result["overlay"]).name
        md += ["", f"## Overlay: {result.get('overlay_sequence', '')}", "",
               "Heat map: /saliency; green: SOD mask; white: ground truth.", "",
               f"![overlay]({name})" if name.endswith(".gif") else f"[{name}]({name})"]
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
