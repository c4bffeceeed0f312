"""report.html: one self-contained page with every trajectory, its image with the zoom boxes drawn, the crops and
the turns; checked by parsing it and by rendering it in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pyarrow.parquet as pq
import pytest
from eval_fixtures import ChatServer, answer, overrides, run_eval, user_text, vstar_parquet, zoom
from PIL import Image

ZOOM_ORANGE = np.array([255, 140, 0])


class Sections(HTMLParser):
    """Each ``section.traj``: its attributes, image sources and text."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[dict] = []
        self.shown: str | None = None
        self._in_shown = False
        self._stack = 0
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith(("data:", "#")):
                self.external.append(attrs[key])
        if tag == "section" and "traj" in (attrs.get("class") or ""):
            self.sections.append({**attrs, "images": [], "text": ""})
        elif tag == "img" and self.sections:
            self.sections[-1]["images"].append(attrs["src"])
        self._in_shown = attrs.get("id") == "shown"

    def handle_data(self, data):
        if self._in_shown:
            self.shown = data
        if self.sections:
            self.sections[-1]["text"] += data

    def handle_endtag(self, tag):
        self._in_shown = False


def decode(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("report")
    path = vstar_parquet(tmp)
    rows = pq.read_table(path).to_pylist()
    truth = [r["reward_model"]["ground_truth"] for r in rows]
    table = {
        user_text(rows[0]): [zoom([28, 28, 84, 56]), answer(truth[0])],  # right, after a zoom to [30, 30, 90, 60]
        user_text(rows[1]): [answer("Z")],  # wrong
        user_text(rows[2]): [("status", 500)],  # failed
        user_text(rows[3]): [answer(truth[3])],  # right
    }
    out = tmp / "out"
    with ChatServer(table) as server:
        run_eval(overrides(tiny_model_dir, [path], out, server.base_url))
    return out / "report.html"


def parse(html: str) -> Sections:
    parser = Sections()
    parser.feed(html)
    return parser


def test_report_holds_every_trajectory_with_images_boxes_and_turns(report):
    page = parse(report.read_text())
    assert page.external == []  # self-contained: no file or network references
    by_outcome = {s["data-outcome"] for s in page.sections}
    assert len(page.sections) == 4 and by_outcome == {"correct", "wrong", "failed"}
    assert [s["data-outcome"] for s in page.sections] == ["correct", "wrong", "failed", "correct"]
    zoomed = page.sections[0]
    assert len(zoomed["images"]) == 2  # the question image and the crop
    assert "<box>[28, 28, 84, 56]</box>" in zoomed["text"] and "<tool_response>" in zoomed["text"]
    image = np.asarray(decode(zoomed["images"][0])).astype(int)
    assert image.shape == (90, 120, 3)
    # The zoom box [30, 30, 90, 60] is drawn (3 px, orange) on the original: its top edge at y = 30..32.
    assert np.abs(image[31, 45:75] - ZOOM_ORANGE).max() < 60
    assert np.abs(image[45, 60] - ZOOM_ORANGE).max() > 60  # inside the box: the picture, not the frame
    crop = decode(zoomed["images"][1])
    assert crop.size == (60, 30)
    assert "InternalServerError" in page.sections[2]["text"]


CHROMIUM = shutil.which("chromium")
INSTALL = "apt-get update && apt-get install -y chromium"


def render(url: str) -> str:
    """The DOM after the page's script ran, from headless chromium."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=2000", "--dump-dom", url]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason=f"needs Debian's chromium for the browser check: {INSTALL}")
def test_report_renders_and_filters_in_a_headless_browser(report):
    everything = parse(render(report.as_uri()))
    assert len(everything.sections) == 4 and everything.shown == "4"
    assert not any("display: none" in (s.get("style") or "") for s in everything.sections)
    failed = parse(render(report.as_uri() + "#outcome=failed"))
    hidden = {s["data-outcome"] for s in failed.sections if "display: none" in (s.get("style") or "")}
    visible = [s["data-outcome"] for s in failed.sections if "display: none" not in (s.get("style") or "")]
    assert visible == ["failed"] and hidden == {"correct", "wrong"} and failed.shown == "1"
    correct = parse(render(report.as_uri() + "#source=vstar&outcome=correct"))
    assert correct.shown == "2"
