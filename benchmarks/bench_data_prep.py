"""Data-prep throughput and memory, each run in a fresh process so peak RSS is its own.

RefCOCO: streaming row groups (ours) vs building one big table (naive). Generates a REFER-layout fixture
(refs pickle + instances.json + small JPEGs, ~7 expressions per image as in RefCOCO) and converts it at
several sizes. The naive way builds the same rows with the same converter, then one ``pa.Table`` per split
written at the end.

HR-Bench: the TSV (base64 images, half the rows referring to another row's image, as the released files do)
read by streaming CSV with each image decoded once to disk (ours) vs ``pandas.read_csv`` of the whole file,
VLMEvalKit's way, feeding the same converter. Same rows either way; the difference is what memory holds.

    python benchmarks/bench_data_prep.py [--sizes 12500 25000 50000] [--hr-rows 100 200]
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPRESSIONS_PER_REF = 3
REFS_PER_IMAGE = 2
SPLITS = ("train", "train", "train", "val", "testA", "testB")


def make_fixture(root: Path, expressions: int) -> dict[str, Path]:
    from PIL import Image

    refs_n = expressions // EXPRESSIONS_PER_REF
    images_n = -(-refs_n // REFS_PER_IMAGE)
    refer, images = root / "refer" / "refcoco", root / "images"
    refer.mkdir(parents=True)
    images.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 30, 200)).save(buf, format="JPEG")
    for i in range(images_n):
        (images / f"COCO_train2014_{i:012d}.jpg").write_bytes(buf.getvalue())
    instances = {
        "images": [
            {"id": i, "width": 64, "height": 48, "file_name": f"COCO_train2014_{i:012d}.jpg"} for i in range(images_n)
        ],
        "annotations": [
            {
                "id": r,
                "image_id": r // REFS_PER_IMAGE,
                "category_id": 1,
                "bbox": [2.0, 3.0, 20.0, 30.0],
                "area": 600.0,
                "iscrowd": 0,
            }
            for r in range(refs_n)
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    (refer / "instances.json").write_text(json.dumps(instances))
    refs = [
        {
            "ref_id": r,
            "ann_id": r,
            "image_id": r // REFS_PER_IMAGE,
            "category_id": 1,
            "split": SPLITS[(r // REFS_PER_IMAGE) % len(SPLITS)],
            "sentences": [
                {"sent": f"the person number {r} seen from angle {s}", "raw": "", "sent_id": r * 10 + s, "tokens": []}
                for s in range(EXPRESSIONS_PER_REF)
            ],
        }
        for r in range(refs_n)
    ]
    (refer / "refs(unc).p").write_bytes(pickle.dumps(refs))
    return {"refer": root / "refer", "images": images}


def child(mode: str, refer: str, images: str, out: str) -> None:
    """Runs one conversion in this (fresh) process and prints seconds, peak RSS and rows as JSON."""
    import contextlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("refcoco_to_parquet", REPO / "data_prep" / "refcoco_to_parquet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    argv = ["--refer-root", refer, "--image-root", images, "--out", out]
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        if mode == "streaming":
            mod.cli.run(mod.build_parser(), mod.main, argv)
        else:
            naive(mod, mod.build_parser().parse_args(argv))
    seconds = time.perf_counter() - start
    rows = sum(pq_rows(p) for p in Path(out).glob("*.parquet"))
    peak_mb = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "rows": rows}))


def naive(mod, args: argparse.Namespace) -> None:
    """The same rows, collected in memory and written as one table per split at the end."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = args.refer_root / args.dataset
    refs = mod.load_refs(folder / "refs(unc).p")
    coco = mod.load_instances(folder / "instances.json")
    converter = mod.RefcocoConverter(args, folder / "refs(unc).p", folder / "instances.json", coco)
    by_split: dict[str, list[dict]] = {}
    for item in mod.expressions(refs, False, 0):
        split, row = converter.build(item)
        row["extra_info"]["index"] = len(by_split.setdefault(split, []))
        by_split[split].append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, rows in by_split.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=mod.GROUNDING_SCHEMA), args.out / f"{split}.parquet")


def make_tsv(path: Path, rows: int) -> None:
    """An HR-Bench-like TSV: one 1600x1200 noise JPEG (~1.5 MB of base64) per two rows, the second by index."""
    import base64

    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(0)
    records = []
    for k in range(rows):
        image = str(k - 1)
        if k % 2 == 0:
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
            image = base64.b64encode(buf.getvalue()).decode()
        records.append(
            {
                "index": k,
                "question": f"What is shown {k}?",
                "A": "red",
                "B": "blue",
                "C": "green",
                "D": "white",
                "answer": "ABCD"[k % 4],
                "category": "single",
                "cycle_category": f"c{k // 4}",
                "image": image,
            }
        )
    pd.DataFrame(records).to_csv(path, sep="\t", index=False)


def hr_child(mode: str, tsv: str, out: str) -> None:
    """One HR-Bench conversion in this process: streaming CSV (ours) or pandas reading the whole file."""
    import contextlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("hr_bench_to_parquet", REPO / "data_prep" / "hr_bench_to_parquet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    argv = ["--tsv", tsv, "--out", out]
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        if mode == "streaming":
            mod.cli.run(mod.build_parser(), mod.main, argv)
        else:
            import pandas as pd

            args = mod.build_parser().parse_args(argv)
            frame = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
            records = enumerate(frame.to_dict("records"), 1)
            converter = mod.HrBenchConverter(args, mod.HR_BENCH_4K, mod.ImageStore(args.out / "images"))
            mod.cli.convert(
                converter.items(records),
                converter.build,
                out_dir=args.out,
                schema=mod.ANSWER_SCHEMA,
                skip_bad=False,
                outputs=[mod.HR_BENCH_4K],
                folders=["images"],
            )
    seconds = time.perf_counter() - start
    rows = sum(pq_rows(p) for p in Path(out).glob("*.parquet"))
    peak_mb = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "rows": rows}))


def hr_bench(sizes: list[int], tmp: str) -> None:
    print(
        f"\n{'HR-Bench rows':>13} | {'TSV MB':>6} | {'streaming s':>11} {'peak MB':>8} | {'pandas s':>8} "
        f"{'peak MB':>8} | {'mem ratio':>9}"
    )
    for n in sizes:
        tsv = Path(tmp) / f"hr_bench_4k_{n}.tsv"
        make_tsv(tsv, n)
        runs = {}
        for mode in ("streaming", "pandas"):
            cmd = [sys.executable, __file__, "--hr-child", mode, str(tsv), str(Path(tmp) / f"hr_{mode}_{n}")]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        s, b = runs["streaming"], runs["pandas"]
        assert s["rows"] == b["rows"] == n, runs
        print(
            f"{n:>13} | {tsv.stat().st_size / 2**20:>6.0f} | {s['seconds']:>11.2f} {s['peak_mb']:>8.0f} | "
            f"{b['seconds']:>8.2f} {b['peak_mb']:>8.0f} | {b['peak_mb'] / s['peak_mb']:>8.2f}x"
        )


def peak_rss_mb() -> float:
    """This process's peak RSS since exec (VmHWM): ``ru_maxrss`` would include the parent's peak before the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def measure(mode: str, paths: dict[str, Path], out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(paths["refer"]), str(paths["images"]), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[12_500, 25_000, 50_000], help="expressions per run")
    p.add_argument("--hr-rows", type=int, nargs="*", default=[100, 200], help="HR-Bench TSV rows (none: skip)")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--hr-child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.hr_child:
        hr_child(*args.hr_child)
        return
    print(
        f"{'expressions':>11} | {'streaming s':>11} {'peak MB':>8} | {'one table s':>11} {'peak MB':>8} | "
        f"{'time ratio':>10} {'mem ratio':>9}"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            paths = make_fixture(Path(tmp) / f"fx{n}", n)
            s = measure("streaming", paths, Path(tmp) / f"s{n}")
            b = measure("naive", paths, Path(tmp) / f"b{n}")
            assert s["rows"] == b["rows"] == n - n % EXPRESSIONS_PER_REF, (s, b)
            results.append((n, s, b))
            print(
                f"{n:>11} | {s['seconds']:>11.2f} {s['peak_mb']:>8.0f} | {b['seconds']:>11.2f} {b['peak_mb']:>8.0f} | "
                f"{b['seconds'] / s['seconds']:>9.2f}x {b['peak_mb'] / s['peak_mb']:>8.2f}x"
            )
    (n0, s0, b0), (n1, s1, b1) = results[0], results[-1]
    print(
        f"peak RSS growth from {n0} to {n1} expressions: streaming +{s1['peak_mb'] - s0['peak_mb']:.0f} MB, "
        f"one table +{b1['peak_mb'] - b0['peak_mb']:.0f} MB (the annotations themselves are held in memory by both)"
    )
    print(f"throughput at {n1}: streaming {n1 / s1['seconds']:.0f} expressions/s")
    if args.hr_rows:
        with tempfile.TemporaryDirectory() as tmp:
            hr_bench(args.hr_rows, tmp)


if __name__ == "__main__":
    main()
