"""Decoded originals per agent-loop worker: one per trajectory (before) vs one per image (after), 8K images.

A rollout step of the recipe runs ``prompts x rollouts`` trajectories; all rollouts of a prompt live in one
agent-loop worker at once and each zooms into the prompt's 8K original. Before the shared cache every trajectory
decoded and held its own copy (about 100 MB and 0.6 s each); now a worker decodes each image once and drops it when
the last trajectory holding it ends (``verl_ext.tools.originals.OriginalCache``). Both variants drive the real
``RegionZoomTool`` create/execute/release cycle from concurrent trajectories that stay alive until every one has
zoomed (as in a rollout step), then release them as the agent loop does. "Before" is the same tool with every
trajectory's image made a distinct identity, which decodes and holds per trajectory exactly as the tool did. Each
variant runs in a fresh process so its peak resident memory (VmHWM, reset before the step) is its own.

    python benchmarks/bench_branching.py [--prompts 8] [--rollouts 8] [--width 7680] [--height 4320]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from verl_ext.geometry import Frame
from verl_ext.imaging import load_rgb
from verl_ext.tools.region_zoom import RegionZoomTool

BOUNDS = {"min_pixels": 3136, "max_pixels": 401408}  # the paper's processor bounds, as rows carry them
VARIANTS = {"before": "one decode per trajectory", "after": "one decode per image per worker"}


def write_images(folder: Path, count: int, width: int, height: int) -> None:
    """Photo-like 8K JPEGs (gradients plus noise, quality 90), one per prompt."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    for i in range(count):
        noise = rng.normal(0, 12, (height, width, 1)).astype(np.float32)
        Image.fromarray(np.clip(base + noise + 7 * i, 0, 255).astype(np.uint8), "RGB").save(
            folder / f"p{i}.jpg", quality=90
        )


def status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:"))


def reset_peak_rss() -> None:
    """Restart the kernel's peak-RSS count (VmHWM) from the current RSS (Linux: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


async def rollout_step(tool: RegionZoomTool, prompts: int, rollouts: int) -> float:
    """Seconds until every trajectory has zoomed once; trajectories are released afterwards, as at step end."""
    trajectories = [SimpleNamespace(extra_fields={}) for _ in range(prompts * rollouts)]

    async def trajectory(i: int) -> None:
        kwargs = {"image_path": f"p{i // rollouts}.jpg", **BOUNDS}
        instance_id, _ = await tool.create(create_kwargs=kwargs)
        response, _, metrics = await tool.execute(instance_id, {"bbox_2d": [100, 50, 300, 250]}, trajectories[i])
        await tool.release(instance_id)
        if not metrics["valid"]:
            raise RuntimeError(response.text)

    start = time.perf_counter()
    await asyncio.gather(*(trajectory(i) for i in range(len(trajectories))))
    elapsed = time.perf_counter() - start
    for t in trajectories:
        tool.release_trajectory(t)
    return elapsed


def run_variant(variant: str, folder: Path, prompts: int, rollouts: int) -> dict:
    tool = RegionZoomTool({"type": "native", "image_root": str(folder)})
    if variant == "before":  # every trajectory its own image identity: its own decode, held until it ends
        acquire, ids = tool.originals.acquire, itertools.count()
        tool.originals.acquire = lambda key, decode: acquire((key, next(ids)), decode)
    load_rgb(Image.new("RGBA", (8, 8)))  # import what decoding and the frame need before the baseline
    Frame.of(8, 8, **BOUNDS)
    baseline = status_kb("VmRSS")
    reset_peak_rss()
    seconds = asyncio.run(rollout_step(tool, prompts, rollouts))
    peak = status_kb("VmHWM")
    return {
        "seconds": seconds,
        "decodes": tool.originals.decodes,
        "peak_mb": (peak - baseline) / 1024,
        "left": len(tool.originals),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--width", type=int, default=7680)
    parser.add_argument("--height", type=int, default=4320)
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # child process: one variant, one JSON line
        print(json.dumps(run_variant(args.variant, Path(args.images), args.prompts, args.rollouts)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        write_images(Path(tmp), args.prompts, args.width, args.height)
        results = {}
        for variant in VARIANTS:
            cmd = [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--images",
                tmp,
                "--prompts",
                str(args.prompts),
                "--rollouts",
                str(args.rollouts),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[variant] = json.loads(out.strip().splitlines()[-1])

    print(
        f"{args.prompts} prompts x {args.rollouts} rollouts, one {args.width}x{args.height} JPEG per prompt, one worker"
    )
    print(f"{'variant':<34}{'decodes':>9}{'step s':>9}{'peak MB':>10}{'held after':>12}")
    for variant, label in VARIANTS.items():
        r = results[variant]
        print(f"{label:<34}{r['decodes']:>9}{r['seconds']:>9.2f}{r['peak_mb']:>10.0f}{r['left']:>12}")
    before, after = results["before"], results["after"]
    print(
        f"after/before: decodes {after['decodes'] / before['decodes']:.3f}, "
        f"time {after['seconds'] / before['seconds']:.2f}, "
        f"peak memory {after['peak_mb'] / max(before['peak_mb'], 1):.2f}"
    )


if __name__ == "__main__":
    main()
