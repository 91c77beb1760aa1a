"""Benchmark: the nodes end to end through Fast DDS (loopback profile), camera in its own process.

For each case, N camera processes play the real 720p drone clip (resized to the case's
resolution, frames decoded before the clock starts so decoding is not measured) at 30 Hz and
record the stamps they sent, N `saliency-ros run --camera none` (one per camera namespace) run
saliency_node + objects_node with config/drone.yaml, each node in a child process of its own
(`--one-process`: both in the one process; `--separate`: the node executables started directly,
as `ros2 launch` does; `--shared-inference`: saliency_node alone makes both outputs), and this
process subscribes to /saliency and the object mask. Latency is receive time minus the camera's
header stamp (one machine, one clock). CPU % and RSS of the processes that started (and their
children: the nodes under `saliency-ros run`) are sampled every second.

Run from the repository root: .venv/bin/python -m bench.node_latency [--seconds 20]
Writes bench/results/node_latency.json, docs/results/node_rss.png and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from bench.models import machine

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "aerial" / "Vehicle_00083.avi"
SHARED_PARAMS = REPO / "config" / "shared_inference.yaml"
SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
CASES = ("480p:1", "720p:1", "720p:1:mono8", "1080p:1", "720p:4")
TOPICS = {"saliency": "saliency", "mask": "saliency/objects/mask"}
ENV = {"FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_loopback.xml"),
       "ROS_DOMAIN_ID": str(150 + os.getpid() % 50), "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}


@dataclass
class Stream:
    """Arrival times (ns) of each output, by header stamp, for one camera namespace."""

    arrivals: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))


def play(size: str, namespace: str, stamps_file: Path, subscribers: int) -> None:
    """Camera process: once `subscribers` node subscriptions match, publish the clip at 30 Hz until
    SIGINT, then write the sent stamps."""
    import array
    import signal

    import cv2
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from saliency_ros.sources.files import frames, open_source

    width, height = SIZES[size]
    payloads = []
    for frame in frames(open_source(str(CLIP))):
        data = array.array("B")
        data.frombytes(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA).tobytes())
        payloads.append(data)
    rclpy.init()
    node = rclpy.create_node("bench_camera", namespace=namespace)
    pub = node.create_publisher(Image, "camera/image_raw", QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    # Frames published before the nodes' subscriptions match go to nobody: the first 0.3 s of
    # the window came back unanswered in some runs (session 18) when decoding the clip outlasted
    # the warm-up. Start only once every node listens, and say so to the benchmark.
    while pub.get_subscription_count() < subscribers and not stop:
        time.sleep(0.05)
    started_file(stamps_file).touch()
    sent: list[int] = []
    period, start = 1 / 30, time.monotonic()
    i = 0
    while not stop:
        msg = Image(height=height, width=width, encoding="bgr8", step=width * 3)
        msg.header.frame_id = "camera"
        stamp = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        msg.data = payloads[i % len(payloads)]
        pub.publish(msg)
        sent.append(stamp)
        i += 1
        time.sleep(max(0.0, start + i * period - time.monotonic()))
    stamps_file.write_text(json.dumps(sent))
    node.destroy_node()
    rclpy.shutdown()


def started_file(stamps_file: Path) -> Path:
    """The file a camera process creates when it starts publishing."""
    return stamps_file.with_suffix(".started")


def _proc_sample(pid: int) -> tuple[float, float]:
    """(CPU seconds used so far, RSS MiB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS"))
    return cpu_s, rss / 1024


def _with_children(pids: list[int]) -> list[int]:
    """The processes and their children: `saliency-ros run` supervises one child per node."""
    return [c for pid in pids for c in
            (pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split()))]


def run_case(size: str, cameras: int, seconds: float, warmup: float, workdir: Path,
             saliency_encoding: str = "32FC1", separate: bool = False, one_process: bool = False,
             saliency_size: str = "camera",
             objects_nice: int = 0, overrides: dict[str, dict] | None = None, shared_inference: bool = False) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from saliency_ros.nodes.base import SPLIT

    width, height = SIZES[size]
    params = yaml.safe_load((REPO / "config" / "drone.yaml").read_text())
    params["/**/camera_source"]["ros__parameters"].update(
        {"source": str(CLIP), "width": width, "height": height, "rate_hz": 30.0, "loop": True})
    params["/**/saliency_node"]["ros__parameters"].update(
        {"output_encoding": saliency_encoding, "output_size": saliency_size})
    for node, values in (overrides or {}).items():
        params[f"/**/{node}"]["ros__parameters"].update(values)
    params_file = workdir / f"{size}_{cameras}_{saliency_encoding}_{saliency_size}.yaml"
    params_file.write_text(yaml.safe_dump(params))
    env = {**os.environ, **ENV}
    namespaces = [f"cam{i}" for i in range(cameras)]
    # Shared inference: saliency_node alone, config/shared_inference.yaml over the file, as
    # `drone.launch.py shared_inference:=true` and `saliency-ros run --shared-inference` do.
    roles = ("saliency",) if shared_inference else ("saliency", "objects")
    if separate:  # one process per node, as `ros2 launch` starts them
        def prefix(node: str) -> list[str]:
            return ["nice", "-n", str(objects_nice)] if objects_nice and node == "objects_node" else []

        def files(node: str) -> list[str]:
            shared = ["--params-file", str(SHARED_PARAMS)] if shared_inference and node == "saliency_node" else []
            return ["--params-file", str(params_file), *shared]

        commands = [[*prefix(n), sys.executable, "-m", f"saliency_ros.nodes.{n}", "--ros-args", *files(n),
                     "-r", f"__ns:=/{ns}"] for ns in namespaces for n in (f"{r}_node" for r in roles)]
    else:  # `saliency-ros run`: a child process per node, or with --one-process one process
        commands = [[sys.executable, "-m", "saliency_ros.cli", "run", "--camera", "none",
                     "--params", str(params_file), "--namespace", ns, *(["--one-process"] if one_process else []),
                     *(["--shared-inference"] if shared_inference else [])] for ns in namespaces]
    nodes = [subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for c in commands]
    cams: list[subprocess.Popen] = []

    def give_up(message: str) -> None:
        """Stop what this case started, then fail: a failed case left its node processes
        running (found in session 18), using CPU in every later measurement."""
        for p in cams + nodes:
            p.kill()
            p.wait()
        raise RuntimeError(message)

    stream = {ns: Stream() for ns in namespaces}
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("bench_probe", context=context)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    recording = threading.Event()  # outputs of frames sent in the measured window only

    def keep(ns: str, what: str):
        def store(msg: Image) -> None:
            if recording.is_set():
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                stream[ns].arrivals[what][stamp] = time.time_ns()
        return store

    for ns in namespaces:
        for what, topic in TOPICS.items():
            node.create_subscription(Image, f"/{ns}/{topic}", keep(ns, what), qos)
    from diagnostic_msgs.msg import DiagnosticArray

    status: dict[str, dict[str, str]] = {}  # newest /diagnostics values by node name

    def keep_status(msg: DiagnosticArray) -> None:
        for st in msg.status:
            status[st.name] = {kv.key: kv.value for kv in st.values}

    node.create_subscription(DiagnosticArray, "/diagnostics", keep_status, 10)
    executor = SingleThreadedExecutor(context=context)  # see nodes/bringup.py: MT loses frames
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    # The cameras start once every node reports on /diagnostics (its 1 Hz timer runs only once
    # the node spins, after autostart's configure + activate): a fixed wait let a slow start
    # (about one run in four here) miss the window's first second of frames.
    expected = {f"/{ns}/{role}_node: {role}" for ns in namespaces for role in roles}
    deadline = time.monotonic() + 60.0
    while not expected <= set(status):
        if exited := [p.returncode for p in nodes if p.poll() is not None]:
            give_up(f"node processes exited (codes {exited}) before reporting (their output is not kept: "
                    f"start one alone to see why; e.g. 10 for a float parameter fails configure); no /diagnostics from {sorted(expected - set(status))}")
        if time.monotonic() > deadline:
            give_up(f"nodes not up after 60 s: no /diagnostics from {sorted(expected - set(status))}")
        time.sleep(0.2)
    time.sleep(2.0)  # margin, as the fixed wait had, for the processes to settle
    stamp_files = {ns: workdir / f"sent_{ns}.json" for ns in namespaces}
    for f in stamp_files.values():
        started_file(f).unlink(missing_ok=True)  # the workdir outlives a case
    cams += [subprocess.Popen([sys.executable, "-m", "bench.node_latency", "--play", size, ns, str(stamp_files[ns]),
                               str(len(roles))],
                              cwd=REPO, env=env) for ns in namespaces]
    deadline = time.monotonic() + 60.0
    while not all(started_file(f).exists() for f in stamp_files.values()):
        if time.monotonic() > deadline or any(p.poll() is not None for p in cams):
            give_up("cameras did not start publishing within 60 s (no matched node subscriptions)")
        time.sleep(0.05)
    time.sleep(warmup)
    recording.set()
    record_from = time.time_ns()
    samples: list[tuple[float, float, float]] = []  # (t, cpu %, rss MiB) summed over node processes
    per_process: list[list[float]] = []  # RSS MiB of each node process, at the same times
    pids = _with_children([p.pid for p in nodes])
    last = [_proc_sample(pid) for pid in pids]
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        now = [_proc_sample(pid) for pid in pids]
        cpu = sum(n[0] - l[0] for n, l in zip(now, last)) * 100.0
        samples.append((round(time.monotonic() - t0, 1), round(cpu, 1), round(sum(n[1] for n in now), 1)))
        per_process.append([round(n[1], 1) for n in now])
        last = now
    record_to = time.time_ns()
    # Where the time goes, as the nodes report it (p50 over their last 5 s, first camera).
    split = {role: {k: float(v[f"{k}_ms_p50"]) for k in SPLIT}
             for name, v in status.items() for role in ("saliency", "objects")
             if name == f"/{namespaces[0]}/{role}_node: {role}" and "model_ms_p50" in v}
    time.sleep(1.0)  # let the last outputs arrive
    recording.clear()
    for p in cams + nodes:
        p.send_signal(2)
    for p in cams + nodes:
        p.wait(20)
    sent = {ns: [t for t in json.loads(stamp_files[ns].read_text()) if record_from <= t < record_to]
            for ns in namespaces}
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)

    result: dict = {"size": size, "frame": f"{width}x{height}", "cameras": cameras, "seconds": seconds,
                    "processes": "one per node (as ros2 launch)" if separate else
                    "saliency-ros run --one-process" if one_process else "saliency-ros run (one per node)",
                    "shared_inference": shared_inference,
                    "objects_nice": objects_nice, "overrides": overrides or {},
                    "saliency_encoding": saliency_encoding, "saliency_size": saliency_size,
                    "cpu_percent_mean": round(float(np.mean([s[1] for s in samples])), 1),
                    "rss_mib_start": samples[0][2], "rss_mib_end": samples[-1][2], "rss_series": samples,
                    "rss_by_process": per_process, "split_ms_p50": split}
    for what in ("saliency", "mask"):
        lat, n_sent, answered = [], 0, 0
        for ns, s in stream.items():
            n_sent += len(sent_stamps := set(sent[ns]))
            for stamp in sent_stamps:
                if stamp in s.arrivals[what]:
                    answered += 1
                    lat.append((s.arrivals[what][stamp] - stamp) / 1e6)
        p50, p95, p99 = (np.percentile(lat, [50, 95, 99]) if lat else (np.nan,) * 3)
        per_camera = {ns: round(100.0 * sum(t in s.arrivals[what] for t in set(sent[ns])) / max(len(set(sent[ns])), 1), 1)
                      for ns, s in stream.items()}
        result[what] = {"frames_sent": n_sent, "frames_answered": answered, "answered_percent_by_camera": per_camera,
                        "unanswered_by_camera": {ns: unanswered_spans(sorted(set(sent[ns])), s.arrivals[what], record_from)
                                                 for ns, s in stream.items()},
                        "answered_percent": round(100.0 * answered / max(n_sent, 1), 1),
                        "output_hz_per_camera": round(answered / seconds / cameras, 1),
                        "latency_ms_p50": round(float(p50), 1), "latency_ms_p95": round(float(p95), 1),
                        "latency_ms_p99": round(float(p99), 1)}
    return result


def unanswered_spans(sent: list[int], arrivals: dict[int, int], start_ns: int) -> list[list[float]]:
    """The sent frames that never came back, as [first, last, count] runs of consecutive frames
    (seconds into the window): whether losses are a burst (a stall somewhere) or scattered."""
    spans: list[list[float]] = []
    previous_missing = False
    for stamp in sent:
        missing = stamp not in arrivals
        if missing:
            t = round((stamp - start_ns) / 1e9, 3)
            if previous_missing:
                spans[-1][1:] = [t, spans[-1][2] + 1]
            else:
                spans.append([t, t, 1])
        previous_missing = missing
    return spans


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    per_process = len(results) == 1 and results[0].get("rss_by_process")  # a soak: one line a process
    for r in results:
        t, _, rss = zip(*r["rss_series"])
        if per_process:
            for i, series in enumerate(zip(*r["rss_by_process"])):
                ax.plot(t, series, label=f"{r['size']} process {i + 1} of {len(r['rss_by_process'][0])}")
        else:
            ax.plot(t, rss, label=f"{r['size']} x{r['cameras']} {r['saliency_encoding']}")
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS per node process (MiB)" if per_process else "RSS of node processes (MiB)")
    ax.set_title("Memory of the nodes under a 30 Hz camera load")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    if sys.argv[1:2] == ["--play"]:
        play(sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--cases", nargs="+", default=list(CASES), metavar="SIZE:CAMERAS[:ENCODING]",
                        help="e.g. 720p:1 720p:1:mono8 720p:4 (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "node_latency.json")
    parser.add_argument("--separate", action="store_true",
                        help="each node in its own process, as `ros2 launch` starts them (default: saliency-ros run)")
    parser.add_argument("--one-process", action="store_true",
                        help="`saliency-ros run --one-process`: both nodes in one process")
    parser.add_argument("--saliency-size", choices=("camera", "model"), default="camera",
                        help="the saliency node's output_size: the camera's frame (the default) or the model's grid")
    parser.add_argument("--objects-nice", type=int, default=0,
                        help="with --separate: start the objects node under `nice -n N`")
    parser.add_argument("--param", action="append", default=[], metavar="NODE.NAME=VALUE",
                        help="override config/drone.yaml, e.g. objects_node.worker_nice=10 (YAML value; repeatable)")
    parser.add_argument("--shared-inference", action="store_true",
                        help="saliency_node makes both outputs from one model run (config/shared_inference.yaml); "
                        "objects_node is not started")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "results" / "node_rss.png",
                        help="RSS plot (a soak: --cases 720p:4 --seconds 1800 --plot docs/results/soak_rss.png)")
    args = parser.parse_args()
    if args.one_process and args.separate:
        parser.error("--one-process and --separate are two different bring-ups")
    if args.objects_nice and not args.separate:
        parser.error("--objects-nice needs --separate (in one process, set objects_node.worker_nice)")
    if not CLIP.is_file():
        raise SystemExit(f"the real drone clip is needed: {CLIP}")
    os.environ.update(ENV)
    workdir = REPO / "build" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, dict] = {}
    for item in args.param:
        key, _, value = item.partition("=")
        node, _, name = key.partition(".")
        overrides.setdefault(node, {})[name] = yaml.safe_load(value)
    results = []
    for case in args.cases:
        size, cameras, *encoding = case.split(":")
        print(f"running {case} for {args.seconds:.0f} s ...", flush=True)
        results.append(run_case(size, int(cameras), args.seconds, args.warmup, workdir, *encoding,
                                separate=args.separate, one_process=args.one_process,
                                saliency_size=args.saliency_size,
                                objects_nice=args.objects_nice, overrides=overrides,
                                shared_inference=args.shared_inference))
    args.out.write_text(json.dumps({"machine": machine(), "clip": CLIP.name, "cases": results}, indent=2) + "\n")
    plot(results, args.plot)
    print("| frame | cameras | output | answered % | Hz per camera | p50 ms | p95 ms | p99 ms | CPU % | RSS MiB start -> end |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for what in ("saliency", "mask"):
            o = r[what]
            label = f"/saliency {r['saliency_encoding']}" if what == "saliency" else "objects/mask"
            print(f"| {r['frame']} | {r['cameras']} | {label} | {o['answered_percent']} | {o['output_hz_per_camera']} | "
                  f"{o['latency_ms_p50']} | {o['latency_ms_p95']} | {o['latency_ms_p99']} | "
                  f"{r['cpu_percent_mean']} | {r['rss_mib_start']} -> {r['rss_mib_end']} |")
    for r in (r for r in results if r["cameras"] > 1):
        print(f"\n{r['frame']} x{r['cameras']}, answered % by camera: " + "; ".join(
            f"{w}: " + ", ".join(f"{v:.1f}" for v in r[w]["answered_percent_by_camera"].values()) for w in ("saliency", "mask")))
    print("\nWhere a published frame's time goes (p50 ms, first camera, from /diagnostics):")
    print("| frame | cameras | node | receive (stamp -> callback) | decode | preprocess | model | pipeline | encode | publish |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for role, v in r["split_ms_p50"].items():
            print(f"| {r['frame']} | {r['cameras']} | {role} | " + " | ".join(f"{v[k]:.2f}" for k in v) + " |")


if __name__ == "__main__":
    main()
