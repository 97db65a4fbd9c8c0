"""Reference dense optical flow (OpenCV Farneback) on real frames of Megamind.avi, for diffmem's flow tests.

Run with Debian's python3-opencv (no pip packages needed):

    /usr/bin/python3 scripts/reference/flow_reference.py [path/to/Megamind.avi]

Decodes the clip with ffmpeg (area-downscaled to 96x72, BT.601 luma, 8-bit), takes a few frame
pairs inside single shots (4 frames apart so the motion is a few pixels), runs
cv2.calcOpticalFlowFarneback with data-juicer's parameters (video_motion_score_filter) and writes
packages/metrics/src/video/__tests__/fixtures/megamind_farneback.json: the 8-bit frames and the
flow (float32, little-endian, base64), both row-major. The jest test reads that file; it needs
neither python nor ffmpeg.
"""
import base64
import json
import os
import subprocess
import sys

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CLIP = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(os.path.join(HERE, "../../../shared/data/Megamind.avi"))
OUT = os.path.normpath(
    os.path.join(HERE, "../../packages/metrics/src/video/__tests__/fixtures/megamind_farneback.json")
)
WIDTH, HEIGHT = 96, 72
# (first, second) decoded-frame indices; shot cuts of this clip are at frames 99, 155 and 201.
PAIRS = [(6, 10), (72, 76), (180, 184), (243, 247)]
# data-juicer video_motion_score_filter defaults (the reference note, section 7).
PARAMS = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)

cmd = [
    "ffmpeg", "-v", "error", "-nostdin", "-i", CLIP, "-an",
    "-vf", f"scale={WIDTH}:{HEIGHT}:flags=area,format=gray",
    "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1",
]
raw = subprocess.run(cmd, capture_output=True, check=True).stdout
frames = np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH)

frame_bytes = bytearray()
flow_bytes = bytearray()
stats = []
for a, b in PAIRS:
    f0, f1 = frames[a], frames[b]
    flow = cv2.calcOpticalFlowFarneback(f0, f1, None, **PARAMS).astype("<f4")
    frame_bytes += f0.tobytes() + f1.tobytes()
    flow_bytes += flow.tobytes()
    mag = np.sqrt((flow.astype(np.float64) ** 2).sum(-1))
    stats.append({"pair": [a, b], "meanMagnitude": float(mag.mean()), "p95Magnitude": float(np.percentile(mag, 95))})

ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
out = {
    "description": "OpenCV Farneback flow on Megamind.avi frame pairs (see scripts/reference/flow_reference.py)",
    "source": "Megamind.avi (Debian opencv-doc 4.6.0 examples/data)",
    "decode": " ".join(cmd[:-1] + ["pipe:1"]).replace(CLIP, "Megamind.avi"),
    "ffmpeg": ffmpeg_version,
    "opencv": cv2.__version__,
    "width": WIDTH,
    "height": HEIGHT,
    "pairs": [list(p) for p in PAIRS],
    "farneback": PARAMS,
    "frames_uint8_b64": base64.b64encode(bytes(frame_bytes)).decode("ascii"),
    "flow_float32le_b64": base64.b64encode(bytes(flow_bytes)).decode("ascii"),
    "layout": "frames: [pair, 2, H, W] uint8; flow: [pair, H, W, 2] float32 (dx, dy) pixels, prev -> next",
    "stats": stats,
}
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", OUT, f"({os.path.getsize(OUT)} bytes)")
for s in stats:
    print(s)
