"""Benchmark: which camera frames the shipped Fast DDS profile carries to the nodes.

For each case a camera process publishes N frames of one size at one rate (bgr8, reliable,
depth 5, as `camera_source` does) to `saliency-ros run --camera none` (both nodes). The nodes'
own /diagnostics then say how many frames reached their callbacks (`received`) and what they
counted as lost (`lost_in_transport` from DDS message-lost events, `stamp_gap_frames` from the
header stamps). A frame is carried when it reaches the callback; what the node then does with
it (drop the older of two, skip) is counted separately and is not a transport loss.

Every case runs in a process of its own, so each gets the Fast DDS profile it names
(FASTDDS_DEFAULT_PROFILES_FILE is read once per process). `--profiles` writes variants of
config/fastdds_loopback.xml with other shared-memory segment and message sizes, to compare them.

Run from the repository root (no training running):
  .venv/bin/python -m bench.transport [--profiles 32 128:32]
Writes bench/results/transport.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_loopback.xml"
# (width, height, frames, rate Hz): 4K (the nodes' old default limit), 3200x1800, 1440p and
# 1080p, and a 720p stream at 30 Hz and as fast as the camera can publish (rate 0).
CASES = ((3840, 2160, 30, 5.0), (3200, 1800, 30, 5.0), (2560, 1440, 60, 15.0), (1920, 1080, 150, 30.0),
         (1280, 720, 150, 30.0), (1280, 720, 150, 0.0))


def play(width: int, height: int, count: int, rate: float) -> None:
    """Camera process: wait for both nodes to subscribe, publish `count` frames, exit."""
    import array

    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_transport_camera")
    pub = node.create_publisher(Image, "camera/image_raw", QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    end = time.monotonic() + 30
    while pub.get_subscription_count() < 2 and time.monotonic() < end:
        time.sleep(0.1)
    frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)
    data = array.array("B")
    data.frombytes(frame.tobytes())
    start = time.monotonic()
    for i in range(count):
        msg = Image(height=height, width=width, encoding="bgr8", step=width * 3)
        msg.header.frame_id = "camera"
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(1e9 + i * 1e9 / (rate or 30.0)), 1_000_000_000)
        msg.data = data
        pub.publish(msg)
        if rate:
            time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    time.sleep(1.0)  # let reliable retransmissions finish before the writer goes
    node.destroy_node()
    rclpy.shutdown()


def diagnostics(seconds: float) -> dict[str, dict[str, str]]:
    """The newest /diagnostics values of each perception node, listened to for `seconds`."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    rclpy.init()
    node = rclpy.create_node("bench_transport_probe")
    latest: dict[str, dict[str, str]] = {}

    def keep(msg: DiagnosticArray) -> None:
        for st in msg.status:
            role = st.name.rsplit(": ", 1)[-1]
            latest[role] = {"_message": st.message, **{kv.key: kv.value for kv in st.values}}

    node.create_subscription(DiagnosticArray, "/diagnostics", keep, 10)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
    return latest


def run_case(width: int, height: int, count: int, rate: float, profile: Path) -> dict:
    """One case in this process's children; all three processes use `profile`."""
    env = {**os.environ, "FASTDDS_DEFAULT_PROFILES_FILE": str(profile), "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
           "ROS_DOMAIN_ID": str(200 + os.getpid() % 30)}
    nodes = subprocess.Popen([sys.executable, "-m", "saliency_ros.cli", "run", "--camera", "none",
                              "--params", str(REPO / "config" / "drone.yaml")], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(6.0)  # configured and warm
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "bench.transport", "--play", str(width), str(height), str(count),
                        str(rate)], cwd=REPO, env=env, check=True, timeout=300)
        publish_s = time.monotonic() - t0
        out = subprocess.run([sys.executable, "-m", "bench.transport", "--diagnostics", "3"], cwd=REPO, env=env,
                             check=True, timeout=60, capture_output=True, text=True).stdout
    finally:
        nodes.send_signal(2)
        nodes.wait(30)
    status = json.loads(out)
    keys = ("received", "processed", "dropped", "lost_in_transport", "stamp_gap_frames", "_message")
    return {"width": width, "height": height, "mb": round(width * height * 3 / 1e6, 1), "sent": count,
            "rate_hz": rate, "publish_s": round(publish_s, 1),
            "nodes": {role: {k: status.get(role, {}).get(k) for k in keys} for role in ("saliency", "objects")}}


def _shipped(tag: str) -> int | None:
    """A size element of the shipped profile's SHM transport, in MiB (None when not set)."""
    shm = PROFILE.read_text().split("<type>SHM</type>", 1)[1].split("</transport_descriptor>", 1)[0]
    m = re.search(rf"<{tag}>(\d+)<", shm)
    return int(m.group(1)) >> 20 if m else None


def profile_variant(segment_mib: int, message_mib: int | None, folder: Path) -> Path:
    """The shipped profile with another SHM segment size and largest SHM message (None: Fast
    DDS's default of 64 KB, so larger frames travel in fragments)."""
    if (segment_mib, message_mib) == (_shipped("segment_size"), _shipped("maxMessageSize")):
        return PROFILE
    text = re.sub(r"\s*<maxMessageSize>\d+</maxMessageSize>", "", PROFILE.read_text())
    extra = f"\n        <maxMessageSize>{message_mib << 20}</maxMessageSize>" if message_mib else ""
    text = re.sub(r"<segment_size>\d+</segment_size>", f"<segment_size>{segment_mib << 20}</segment_size>{extra}", text)
    path = folder / f"fastdds_{segment_mib}_{message_mib}.xml"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=None, metavar="SEGMENT[:MESSAGE]",
                        help="SHM segment and largest message sizes in MiB to compare, e.g. 32 128:32 "
                             "(no MESSAGE: Fast DDS's 64 KB fragments; default: the shipped profile)")
    parser.add_argument("--play", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--diagnostics", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "transport.json")
    args = parser.parse_args(argv)
    if args.play:
        w, h, n, r = args.play
        play(int(w), int(h), int(n), float(r))
        return 0
    if args.diagnostics:
        print(json.dumps(diagnostics(args.diagnostics)))
        return 0
    from bench.models import machine

    rows = []
    shipped = f"{_shipped('segment_size')}" + (f":{_shipped('maxMessageSize')}" if _shipped("maxMessageSize") else "")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.profiles or [shipped]:
            segment, _, message = spec.partition(":")
            profile = profile_variant(int(segment), int(message) if message else None, Path(tmp))
            for case in CASES:
                row = {"profile": spec + (" (shipped)" if spec == shipped else ""), **run_case(*case, profile)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "command": "python -m bench.transport "
                                    + " ".join(argv if argv is not None else sys.argv[1:]), "rows": rows}, indent=2))
    print("| SHM segment[:message] MiB | frame | MB | sent | rate | saliency_node received / gap / lost | objects_node received / gap / lost |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r['nodes'][n]['received']} / {r['nodes'][n]['stamp_gap_frames']} / {r['nodes'][n]['lost_in_transport']}"
                 for n in ("saliency", "objects")]
        rate = f"{r['rate_hz']:g} Hz" if r["rate_hz"] else "burst"
        print(f"| {r['profile']} | {r['width']}x{r['height']} | {r['mb']} | {r['sent']} | {rate} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
