"""Human-readable outputs: ``summary.md`` (the paper's table and every source's numbers) and ``report.html``.

``report.html`` is one self-contained page (images inlined as data URLs, no network): per trajectory the
question image with every zoom box drawn (numbered, red when the call was invalid; for grounding also the
ground truth in green and the answer in blue), the crops the model received, every turn, the outcome, and
filters by data source and outcome. The filters also read the page's ``#source=...&outcome=...`` fragment, so
a link can open a filtered view.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from verl_ext.data_sources import GROUNDING, HR_BENCH_4K, HR_BENCH_8K, VSTAR
from verl_ext.eval.records import write_atomic
from verl_ext.imaging import load_rgb

THUMB, CROP_THUMB = 640, 240
_COLOURS = {"zoom": (255, 140, 0), "invalid": (220, 0, 0), "truth": (0, 170, 0), "answer": (30, 90, 255)}


def summary_markdown(summary: Mapping[str, float]) -> str:
    """The headline table (V*, HR-Bench 4K/8K, RefCOCO-family Acc@0.5 per split) and one table per source."""
    sources = sorted({name.split("/")[0] for name in summary})
    head = [(VSTAR, "V*"), (HR_BENCH_4K, "HR-Bench 4K"), (HR_BENCH_8K, "HR-Bench 8K")]
    cells = [(label, summary.get(f"{src}/acc")) for src, label in head if f"{src}/acc" in summary]
    for src in (s for s in sources if s in GROUNDING):
        for split in ("val", "testA", "testB", "test"):
            if f"{src}/{split}/acc@0.5" in summary:
                cells.append((f"{src} {split} Acc@0.5", summary[f"{src}/{split}/acc@0.5"]))
    lines = ["# Evaluation summary", ""]
    if cells:
        lines += ["| " + " | ".join(markdown_text(label) for label, _ in cells) + " |", "|" + "---|" * len(cells)]
        lines += ["| " + " | ".join(f"{100 * value:.1f}" for _, value in cells) + " |", ""]
    for src in sources:
        lines += [f"## {markdown_text(src)}", "", "| metric | value |", "|---|---|"]
        for name in sorted(k for k in summary if k.split("/")[0] == src):
            lines.append(f"| {markdown_text(name[len(src) + 1 :])} | {_fmt(summary[name])} |")
        lines.append("")
    return "\n".join(lines)


#: Characters that end a table cell, open HTML, an entity, a code span or a link (data names such as categories can
#: hold any); emphasis marks are left alone (they change no structure, and metric names use ``_``).
_MARKDOWN_SPECIAL = re.compile(r"([\\|<>&`\[\]])")


def markdown_text(text: str) -> str:
    """``text`` as literal markdown inside one table cell or heading line: structural characters escaped, line
    breaks and other control characters as spaces."""
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in str(text))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) > 1 else f"{value:.4f}"


def outcome(record: Mapping[str, Any]) -> str:
    if record.get("failed"):
        return "failed"
    return "correct" if float(record.get("acc") or 0.0) >= 1.0 else "wrong"


def write_report(records: Sequence[Mapping[str, Any]], path: Path, per_source_images: int = 100) -> None:
    """Write ``report.html``; the first ``per_source_images`` trajectories of each source get their images."""
    ordered = sorted(records, key=lambda r: (str(r["data_source"]), str(r["file"]), int(r["position"]), r["sample"]))
    shown: dict[str, int] = defaultdict(int)
    originals = _Originals()
    sections = []
    for record in ordered:
        with_images = shown[record["data_source"]] < per_source_images
        shown[record["data_source"]] += with_images
        sections.append(_section(record, originals if with_images else None))
    sources = sorted({str(r["data_source"]) for r in records})
    page = _PAGE.format(
        count=len(records),
        source_options="".join(f'<option value="{html.escape(s)}">{html.escape(s)}</option>' for s in sources),
        sections="\n".join(sections),
        script=_SCRIPT,
    )
    write_atomic(path, page)


class _Originals:
    """The original image of a record's row, read from its parquet file (path or embedded bytes), decoded through
    ``verl_ext.imaging`` at reduced size (JPEG draft mode: a 8K photo decodes about 3x faster; thumbnails are small)."""

    def __init__(self) -> None:
        self._columns: dict[str, list[Any]] = {}

    def get(self, record: Mapping[str, Any]) -> Image.Image | None:
        file = str(record["file"])
        try:
            if file not in self._columns:
                self._columns[file] = pq.read_table(file, columns=["images"]).column("images").to_pylist()
            entry = (self._columns[file][int(record["position"])] or [None])[0] or {}
            source = entry.get("bytes") or entry.get("path")
            if not source:
                return None
            raw = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            raw.draft("RGB", (THUMB, THUMB))
            return load_rgb(raw)
        except Exception:  # the report shows what it can; a missing image is already a failed record
            return None


def _section(record: Mapping[str, Any], originals: _Originals | None) -> str:
    result = outcome(record)
    parts = [
        f'<section class="traj {result}" data-source="{html.escape(str(record["data_source"]))}" '
        f'data-outcome="{result}">'
    ]
    labels = [record["data_source"], record.get("split"), record.get("category"), record.get("cycle_category")]
    title = " · ".join(html.escape(str(x)) for x in labels if x)
    parts.append(
        f'<h2><span class="badge">{result}</span> {html.escape(str(record["key"]))} '
        f"sample {record['sample']} <small>{title}</small></h2>"
    )
    question = record.get("question") or record.get("expression") or ""
    parts.append(f"<p class=q>{html.escape(str(question))}</p>")
    facts = {
        "truth": record.get("ground_truth"),
        "answer": record.get("answer"),
        "score": record.get("score"),
        "acc": record.get("acc"),
        "iou": record.get("iou"),
        "evidence scale": record.get("evidence_scale"),
        "zooms": len(record.get("zooms") or []),
    }
    parts.append(
        "<p class=facts>"
        + " · ".join(
            f"<b>{k}</b> {html.escape(json.dumps(v) if not isinstance(v, str) else v)}" for k, v in facts.items()
        )
        + "</p>"
    )
    if record.get("failed"):
        parts.append(f'<p class="reason">failed: {html.escape(str(record["failed"]))}</p>')
    if originals is not None:
        image = originals.get(record)
        if image is not None:
            parts.append('<div class="images">' + _figures(record, image) + "</div>")
    for turn in record.get("turns") or []:
        role = html.escape(str(turn["role"]))
        parts.append(f'<pre class="{role}">{role}: {html.escape(str(turn["text"]))}</pre>')
    parts.append("</section>")
    return "\n".join(parts)


def _figures(record: Mapping[str, Any], image: Image.Image) -> str:
    """``image`` may be decoded smaller than the original: boxes (original pixels) are scaled to it."""
    to_image = image.width / float(record.get("image_width") or image.width)
    thumb = image.copy()
    thumb.thumbnail((THUMB, THUMB))
    scale = thumb.width / image.width * to_image
    draw = ImageDraw.Draw(thumb)
    crops = []
    for k, zoom in enumerate(record.get("zooms") or [], start=1):
        box = zoom.get("bbox_original")
        if not box:
            continue
        colour = _COLOURS["zoom" if zoom.get("valid") else "invalid"]
        _box(draw, box, scale, colour, str(k))
        if zoom.get("valid"):
            crop = image.crop(tuple(int(round(v * to_image)) for v in box))
            crop.thumbnail((CROP_THUMB, CROP_THUMB))
            crops.append(
                f'<figure><img class="crop" src="{_data_url(crop)}"><figcaption>zoom {k}</figcaption></figure>'
            )
    if record.get("data_source") in GROUNDING:
        truth = record.get("ground_truth")
        if isinstance(truth, list) and len(truth) == 4:
            _box(draw, truth, scale, _COLOURS["truth"], "truth")
        if record.get("answer_box_original"):
            _box(draw, record["answer_box_original"], scale, _COLOURS["answer"], "answer")
    main = f'<figure><img class="original" src="{_data_url(thumb)}"><figcaption>question image</figcaption></figure>'
    return main + "".join(crops)


def _box(draw: ImageDraw.ImageDraw, box: Sequence[float], scale: float, colour: tuple, label: str) -> None:
    x1, y1, x2, y2 = (float(v) * scale for v in box)
    draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=colour, width=3)
    draw.text((x1 + 3, y1 + 2), label, fill=colour)


def _data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_SCRIPT = """
function applyFilters() {
  const source = document.getElementById('source').value, result = document.getElementById('outcome').value;
  let shown = 0;
  for (const s of document.querySelectorAll('section.traj')) {
    const visible = (source === 'all' || s.dataset.source === source)
      && (result === 'all' || s.dataset.outcome === result);
    s.style.display = visible ? '' : 'none';
    shown += visible;
  }
  document.getElementById('shown').textContent = shown;
}
function fromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const name of ['source', 'outcome']) {
    if (params.has(name)) document.getElementById(name).value = params.get(name);
  }
  applyFilters();
}
document.getElementById('source').addEventListener('change', applyFilters);
document.getElementById('outcome').addEventListener('change', applyFilters);
window.addEventListener('hashchange', fromHash);
fromHash();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Ground-R1 evaluation report</title>
<style>
body {{ font-family: sans-serif; margin: 1em 2em; }}
section.traj {{ border: 1px solid #ccc; border-left: 6px solid #999; margin: 1em 0; padding: .5em 1em; }}
section.correct {{ border-left-color: #2a2; }} section.wrong {{ border-left-color: #d80; }}
section.failed {{ border-left-color: #d22; }}
.badge {{ font-size: .8em; padding: 0 .4em; border-radius: 3px; background: #eee; }}
.images {{ display: flex; flex-wrap: wrap; gap: .5em; align-items: flex-start; }}
figure {{ margin: 0; }} figcaption {{ font-size: .8em; color: #555; }}
pre {{ white-space: pre-wrap; background: #f7f7f7; padding: .4em; }} pre.tool {{ background: #eef4ff; }}
.reason {{ color: #b00; }}
</style></head>
<body>
<h1>Ground-R1 evaluation report</h1>
<p>{count} trajectories; showing <span id="shown">{count}</span>.
<label>data source <select id="source"><option value="all">all</option>{source_options}</select></label>
<label>outcome <select id="outcome"><option value="all">all</option><option value="correct">correct</option>
<option value="wrong">wrong</option><option value="failed">failed</option></select></label></p>
{sections}
<script>{script}</script>
</body></html>
"""
