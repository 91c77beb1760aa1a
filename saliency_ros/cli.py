"""`saliency-ros` command line.

Subcommands import their heavy dependencies lazily: `export` needs the training extra (torch),
the on-board commands must run where torch is not installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from saliency_ros.paths import repo_root

DEFAULT_EXPORTS = (("skd_sst", 64), ("skd_sst", 32), ("sod_effl0", 256))


def _parse_model_spec(text: str) -> tuple[str, int]:
    name, _, size = text.partition(":")
    if not size.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME:SIZE such as skd_sst:64, got {text!r}")
    return name, int(size)


def _cmd_export(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from saliency_ros.runtime.timing import time_onnx
    from saliency_ros.training.export import export_untrained

    if args.out.resolve() == (repo_root() / "models").resolve():
        print("saliency-ros: refusing to write untrained exports into models/", file=sys.stderr)
        return 2
    console = Console()
    table = Table(title=f"Exported to {args.out} (random weights: architecture and speed only)")
    for col in ("model", "input", "params", "MFLOPs", "file MB", "ORT 1 thread", "FPS"):
        table.add_column(col, justify="right" if col != "model" else "left")
    with console.status("exporting") as status:
        for name, size in args.models:
            status.update(f"exporting {name} at {size}x{size}")
            result = export_untrained(name, size, args.out, seed=args.seed)
            timing = time_onnx(result.onnx_path, threads=1, seconds=args.seconds)
            table.add_row(
                name, f"{size}x{size}", f"{result.parameters:,}", f"{result.flops / 1e6:.1f}",
                f"{result.bytes / 1e6:.2f}", f"{timing.p50_ms:.3f} ms", f"{timing.fps:,.0f}",
            )
    console.print(table)
    console.print(
        "These files are NOT trained weights: they exist to check export, parity and speed. "
        "Trained models live in models/ with their cards."
    )
    return 0


def _parse_stop(text: str) -> tuple[str, int]:
    stage, _, n = text.partition("=")
    if not n.isdigit():
        raise argparse.ArgumentTypeError(f"expected STAGE=ITERATION such as stage1=400, got {text!r}")
    return stage, int(n)


def _cmd_train(args: argparse.Namespace) -> int:
    from saliency_ros.training.pipeline import DefaultModelRefused, run_procedure
    from saliency_ros.training.recipe import load_recipe
    from saliency_ros.training.common import StoppedEarly

    try:
        run_procedure(args.procedure, load_recipe(args.recipe), args.out, args.models_dir,
                      dict(args.stop_at or []), keep_students=args.keep_students)
    except StoppedEarly as stop:
        print(f"saliency-ros: {stop}", file=sys.stderr)
        return 3
    except DefaultModelRefused as refused:
        print(f"saliency-ros train {args.procedure}: {refused}", file=sys.stderr)
        return 4
    return 0


def _ros_setup(args: argparse.Namespace, command: str) -> list[Path] | None:
    """DDS environment from --loopback / --domain-id (set before rclpy creates a participant,
    which reads both), and the parameters files resolved: --params, then
    config/shared_inference.yaml over it with --shared-inference; None (after saying why) if
    one is missing."""
    import os

    from saliency_ros.paths import resolve_data_file

    if args.loopback:
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(resolve_data_file("fastdds_loopback.xml", "config")))
    if args.domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    names = [str(args.params)] + (["shared_inference.yaml"] if args.shared_inference else [])
    try:
        return [resolve_data_file(name, "config") for name in names]
    except FileNotFoundError as err:
        print(f"saliency-ros {command}: {err}", file=sys.stderr)
        return None


def _baseline(name: str) -> str:
    """A baseline's name, checked when given: OpenCV is imported only then, not by every
    command (`saliency-ros run` supervises its nodes' processes without it)."""
    from saliency_ros.evaluation.baselines import BASELINES

    if name not in BASELINES:
        raise argparse.ArgumentTypeError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return name


def _cmd_run(args: argparse.Namespace, ros_args: list[str]) -> int:
    params = _ros_setup(args, "run")
    if params is None:
        return 2
    camera = None if args.camera == "none" else args.camera
    if args.node == "camera_source" and camera is None:
        print("saliency-ros run: --node camera_source needs a --camera other than none", file=sys.stderr)
        return 2
    if not (args.one_process or args.node):
        return _run_processes(args, params[0], camera, ros_args)
    from saliency_ros.nodes.bringup import run

    overrides = []
    if args.backend:
        from rclpy.parameter import Parameter

        overrides.append(Parameter("backend", value=args.backend))

    def echo(text: str) -> None:
        """A report in one write: the nodes' processes share the terminal (with --node each
        line names the node)."""
        print("\n".join(f"[{args.node}] {line}" for line in text.splitlines()) if args.node else text, flush=True)

    return run(params, camera, args.namespace, args.camera_topic, args.duration,
               overrides=overrides, extra_ros_args=ros_args, only=args.node, echo=echo)


def _run_processes(args: argparse.Namespace, params: Path, camera: str | None, ros_args: list[str]) -> int:
    """`saliency-ros run`: each node in a child `saliency-ros run --node NAME` with the same
    files, options and ROS arguments (nodes/processes.py). objects_node's child ends at once
    when the files have saliency_node publish the mask."""
    from saliency_ros.nodes.processes import Child, run_children

    common = ["--params", str(params), "--namespace", args.namespace]
    for flag, value in (("--camera-topic", args.camera_topic), ("--backend", args.backend),
                        ("--duration", args.duration)):
        if value is not None:
            common += [flag, str(value)]
    if args.shared_inference:
        common.append("--shared-inference")
    names = (["camera_source"] if camera is not None else []) + ["objects_node", "saliency_node"]
    return run_children([
        Child(name, [sys.executable, "-m", "saliency_ros.cli", "run", "--node", name,
                     "--camera", camera if name == "camera_source" else "none", *common, *ros_args])
        for name in names])


def _cmd_bag(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from saliency_ros.evaluation.bags import BagReader, build_bags, clips_from
    from saliency_ros.evaluation.bag_check import BagError
    from saliency_ros.sources.layouts import DatasetError

    try:
        if args.bag_command == "check":
            for path in args.bags:
                reader = BagReader(path)
                n = sum(1 for _ in reader.frames())
                print(f"{path}: OK, {n} frames, ground truth {'yes' if reader.has_ground_truth else 'no'}, "
                      f"sequences {[s.name for s in reader.sequences]}")
            return 0
        clips = clips_from(args.source, args.layout, args.fps, args.sequences)
        total = sum(min(len(c.frames), args.max_frames or len(c.frames)) for c in clips if c.video is None)
        with tqdm(total=total or None, unit="frame", desc="bag build") as bar:
            paths = build_bags(clips, args.out, args.storage, args.single, args.force, args.max_frames, bar.update)
    except (BagError, DatasetError, FileExistsError) as err:
        print(f"saliency-ros bag: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import shlex

    params = _ros_setup(args, "eval")
    if params is None:
        return 2
    from saliency_ros.evaluation.bag_check import BagError
    from saliency_ros.evaluation.report import OverlayVideo, write_report

    command = "saliency-ros " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        if args.live:
            from saliency_ros.evaluation.live import LiveError, LiveOptions, evaluate_live

            try:
                result, board = evaluate_live(args.bags, LiveOptions(
                    params, namespace=args.namespace, play=args.play == "self", rate=args.rate,
                    record=args.record, wait_s=args.wait, idle_s=args.idle,
                    enable_probability=not args.no_probability))
            except LiveError as err:
                print(f"saliency-ros eval --live: {err}", file=sys.stderr)
                return 3
        else:
            from saliency_ros.evaluation.bags import open_frames
            from saliency_ros.evaluation.offline import OfflineOptions, evaluate

            video, sequence = None, None
            if args.overlay:
                first = open_frames(args.bags[0])
                sequence = args.overlay_sequence or first.sequence_names[0]
                if sequence not in first.sequence_names:
                    raise ValueError(f"--overlay-sequence {sequence!r} is not in {args.bags[0]}; it has "
                                     f"{first.sequence_names}")
                fps = args.overlay_fps or first.sequence_fps(sequence) or 24.0
                video = OverlayVideo(args.out / args.overlay, fps=fps)
            from saliency_ros.evaluation.baselines import BASELINES

            result, board = evaluate(args.bags, OfflineOptions(
                params, backend=args.backend, baselines=BASELINES if args.baselines is None else args.baselines,
                overlay_sequence=sequence, overlay_sink=video))
            if video is not None:
                video.close()
                result["overlay"] = str(video.path) if video.frames else None
                result["overlay_sequence"] = sequence
    except (BagError, FileExistsError, ValueError) as err:  # DatasetError is a ValueError
        print(f"saliency-ros eval: {err}", file=sys.stderr)
        return 2
    report = write_report(result, args.out, board.sod_summaries(), dict(board.latency_ms), command)
    print(report.read_text())
    print(f"report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saliency-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    exp = sub.add_parser(
        "export",
        help="export registered architectures to ONNX + model card (untrained weights)",
        description="Export models to ONNX with model cards, then time them in ONNX Runtime.",
    )
    exp.add_argument("--out", type=Path, default=repo_root() / "build" / "models",
                     help="output folder (default: build/models; never models/)")
    exp.add_argument("--models", type=_parse_model_spec, nargs="+",
                     default=list(DEFAULT_EXPORTS), metavar="NAME:SIZE",
                     help="e.g. skd_sst:64 sod_effl0:256 (default: %(default)s)")
    exp.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    exp.add_argument("--seconds", type=float, default=1.0, help="timing window per model")
    exp.set_defaults(func=_cmd_export)

    train = sub.add_parser(
        "train",
        help="train the SOD net and/or the SKD students from a recipe (resumes where it stopped)",
        description="Train from a recipe in config/training/. `all` runs SOD, SKD, then exports "
        "the results with model cards into --models-dir.",
    )
    train.add_argument("procedure", choices=("sod", "skd", "all", "reshape"),
                       help="reshape: the models in --models-dir to the recipe's export.student_shape and "
                       "sod_shape, and the SOD net's /saliency file at export.saliency_shape, scored again, "
                       "with INT8 copies (no run folder needed)")
    train.add_argument("--recipe", type=Path, default=repo_root() / "config" / "training" / "drone.yaml")
    train.add_argument("--out", type=Path, default=repo_root() / "runs" / "drone",
                       help="run folder: checkpoints, logs, plots, metrics (default: runs/drone)")
    train.add_argument("--models-dir", type=Path, default=repo_root() / "models",
                       help="where `all` writes ONNX files and model cards (default: models/)")
    train.add_argument("--keep-students", action="store_true",
                       help="with `all`: train and export the SOD net alone (both shapes, INT8 copies); the "
                       "students' files in --models-dir stay as they are and are scored beside it")
    train.add_argument("--stop-at", type=_parse_stop, nargs="*", metavar="STAGE=N",
                       help="stop a stage at iteration N (checkpointed; the same command resumes)")
    train.set_defaults(func=_cmd_train)

    run = sub.add_parser(
        "run",
        help="run the camera source, saliency_node and objects_node, one process each",
        description="The nodes of launch/drone.launch.py with the same parameters file, one process "
        "each as `ros2 launch` starts them, for machines without `launch`. Prints live rates and "
        "latency; Ctrl-C stops. Anything after --ros-args goes to ROS (remappings, parameters).",
    )
    from saliency_ros.nodes.processes import NODES

    run.add_argument("--params", type=Path, default=Path("drone.yaml"),
                     help="ROS 2 parameters file (a name in config/ or a path; default drone.yaml)")
    run.add_argument("--shared-inference", action="store_true",
                     help="layer config/shared_inference.yaml over --params: saliency_node publishes /saliency "
                     "and the object mask from one SOD net run per frame; objects_node is not started")
    run.add_argument("--camera", default="synthetic", metavar="synthetic|FILE|DIR|none",
                     help="camera_source input; none: subscribe to an existing camera topic")
    run.add_argument("--camera-topic", default=None,
                     help="remap camera/image_raw (e.g. /drone/camera/image_raw)")
    run.add_argument("--namespace", default="", help="node namespace (outputs are relative to it)")
    run.add_argument("--backend", choices=("cpu", "cuda", "tensorrt"), default=None,
                     help="override the backend parameter of both perception nodes")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    run.add_argument("--one-process", action="store_true",
                     help="all nodes in this one process: about 200 MiB less memory, /saliency about 1 ms "
                     "later at 720p (README, Benchmark)")
    run.add_argument("--node", choices=NODES, default=None,
                     help="run this one node of the bring-up in this process (what `run` starts once per node)")
    run.add_argument("--loopback", action="store_true",
                     help="use config/fastdds_loopback.xml (SHM + 127.0.0.1 only) unless "
                     "FASTDDS_DEFAULT_PROFILES_FILE is already set")
    run.add_argument("--domain-id", type=int, choices=range(0, 233), metavar="0..232", default=None,
                     help="ROS_DOMAIN_ID for this run")
    run.set_defaults(func=_cmd_run)

    bag = sub.add_parser("bag", help="build rosbag2 files from frames+masks or a video; check bags",
                         description="Build evaluation bags: /camera/image_raw (bgr8) and "
                         "/camera/gt_mask (mono8) with the same stamps, at the dataset frame rate.")
    bag_sub = bag.add_subparsers(dest="bag_command", required=True)
    build = bag_sub.add_parser("build", help="dataset folder or video -> rosbag2 (MCAP or sqlite3)")
    build.add_argument("source", type=Path, help="dataset folder (our or DAVIS layout), one sequence "
                       "folder, a folder of frames, or a video file")
    build.add_argument("--out", type=Path, required=True,
                       help="folder for one bag per sequence, or the bag itself with --single")
    build.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    build.add_argument("--single", action="store_true", help="all sequences in one bag, end to end")
    build.add_argument("--layout", default="auto", help="dataset layout (default: detect)")
    build.add_argument("--fps", type=float, default=None,
                       help="frame rate of the stamps (default: the video's, 24 for DAVIS frames)")
    build.add_argument("--sequences", nargs="+", default=None, help="only these sequences")
    build.add_argument("--max-frames", type=int, default=None, help="at most this many frames per sequence")
    build.add_argument("--force", action="store_true", help="replace bags that exist")
    check = bag_sub.add_parser("check", help="read bags through, reporting damage with file and offset")
    check.add_argument("bags", type=Path, nargs="+")
    bag.set_defaults(func=_cmd_bag)

    ev = sub.add_parser("eval", help="score the models on bags: offline, or --live through running nodes",
                        description="Offline: the nodes' pipelines over the bags, no DDS, with OpenCV "
                        "baselines. --live: play one bag into running nodes and score what they publish.")
    ev.add_argument("bags", type=Path, nargs="+", help="rosbag2 folders with /camera/image_raw "
                    "(and /camera/gt_mask or /camera/gt_box for scores); offline, also dataset folders "
                    "or videos, read as `bag build --single` would write them")
    ev.add_argument("--out", type=Path, default=repo_root() / "runs" / "eval",
                    help="report folder: eval.json, report.md, plots (default: runs/eval)")
    ev.add_argument("--params", type=Path, default=Path("drone.yaml"),
                    help="the nodes' parameters file (models, threads, pairing, thresholds)")
    ev.add_argument("--shared-inference", action="store_true",
                    help="layer config/shared_inference.yaml over --params, as `run --shared-inference`")
    ev.add_argument("--backend", choices=("cpu", "cuda", "tensorrt"), default="cpu", help="offline: provider")
    ev.add_argument("--baselines", nargs="*", type=_baseline, default=None, metavar="NAME",
                    help="offline: baselines to score (default: all of evaluation/baselines.BASELINES; "
                    "none: pass the flag alone)")
    ev.add_argument("--overlay", default="overlay.mp4", help="offline: overlay video name in --out "
                    "(.mp4 or .gif; empty: none)")
    ev.add_argument("--overlay-sequence", default=None, help="offline: sequence drawn (default: the first)")
    ev.add_argument("--overlay-fps", type=float, default=None,
                    help="offline: overlay frame rate (default: the sequence's, from its stamps)")
    ev.add_argument("--live", action="store_true", help="replay through DDS into running nodes")
    ev.add_argument("--play", choices=("self", "external"), default="self",
                    help="live: publish the bag here, or listen while `ros2 bag play` does")
    ev.add_argument("--rate", type=float, default=1.0, help="live: replay speed factor")
    ev.add_argument("--record", type=Path, default=None, help="live: keep the received messages in this MCAP bag")
    ev.add_argument("--namespace", default="", help="live: the nodes' namespace")
    ev.add_argument("--wait", type=float, default=15.0, help="live: seconds to wait for the nodes / first frame")
    ev.add_argument("--idle", type=float, default=5.0, help="live, external: stop after this long without frames")
    ev.add_argument("--no-probability", action="store_true",
                    help="live: do not switch on objects_node's probability output for the run")
    ev.add_argument("--loopback", action="store_true", help="live: config/fastdds_loopback.xml")
    ev.add_argument("--domain-id", type=int, choices=range(0, 233), metavar="0..232", default=None)
    ev.set_defaults(func=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args: list[str] = []
    if "--ros-args" in argv:
        cut = argv.index("--ros-args")
        argv, ros_args = argv[:cut], argv[cut:]
    args = build_parser().parse_args(argv)
    if args.func is _cmd_run:
        return int(_cmd_run(args, ros_args))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
