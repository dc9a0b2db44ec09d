"""Check the layout of an `edgeseg bench --html` report as a browser draws it, and take a
screenshot of it.

Headless Chromium loads the page with a small script added that writes, for every plot
<svg>, its viewBox and the four corners of every <text>'s box (``getBBox()`` mapped through
the text's own transform, so rotated labels stay rotated quads) into the DOM; ``--dump-dom``
hands that back. Two text boxes that intersect, or a box reaching outside its svg's viewBox,
is a layout problem.

    python tools/report_layout.py report.html                 # lists problems, exit 1 if any
    python tools/report_layout.py report.html --png shot.png  # and a screenshot (palette PNG)

Chromium runs with --no-sandbox (as root in CI) and a throw-away profile; no network.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]  # a scrollbar would narrow the page between the probe and the screenshot

_PROBE = """<script>
(function () {
  var out = [];
  document.querySelectorAll('svg.plot').forEach(function (svg) {
    var vb = svg.viewBox.baseVal, texts = [];
    svg.querySelectorAll('text').forEach(function (t) {
      if (!t.textContent.trim()) return;
      var b = t.getBBox(), m = t.getCTM();
      var pts = [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height]];
      texts.push({text: t.textContent, quad: pts.map(function (p) {
        return [m.a * p[0] + m.c * p[1] + m.e, m.b * p[0] + m.d * p[1] + m.f]; })});
    });
    out.push({plot: svg.getAttribute('class'), viewbox: [vb.x, vb.y, vb.width, vb.height], texts: texts});
  });
  var pre = document.createElement('pre');
  pre.id = 'layout-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _run(args: list[str], timeout: int = 90) -> subprocess.CompletedProcess:
    browser = chromium()
    if browser is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout)


def text_boxes(page_html: str, width: int = 1200) -> list[dict]:
    """Per plot svg as Chromium lays it out: ``{"plot", "viewbox": [x, y, w, h], "texts":
    [{"text", "quad": 4 corners in the svg's user units}]}``."""
    probed = page_html.replace("</body>", _PROBE + "</body>") if "</body>" in page_html else page_html + _PROBE
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(probed, encoding="utf-8")
        p = _run([f"--window-size={width},1600", "--dump-dom", page.as_uri()])
    m = re.search(r'<pre id="layout-probe">(.*?)</pre>', p.stdout, re.S)
    if not m:
        raise RuntimeError(f"chromium returned no layout (exit {p.returncode}): {p.stderr[-1000:]}")
    import html

    return json.loads(html.unescape(m.group(1)))


def _separated(a, b, eps: float) -> bool:
    """Separating-axis test for two convex quads: True when some edge normal separates them by more
    than -eps (touching or overlapping by less than eps pixels counts as apart)."""
    for quad in (a, b):
        for i in range(4):
            (x0, y0), (x1, y1) = quad[i], quad[(i + 1) % 4]
            nx, ny = y0 - y1, x1 - x0
            norm = (nx * nx + ny * ny) ** 0.5 or 1.0
            pa = [(px * nx + py * ny) / norm for px, py in a]
            pb = [(px * nx + py * ny) / norm for px, py in b]
            if max(pa) <= min(pb) + eps or max(pb) <= min(pa) + eps:
                return True
    return False


def problems(layout: list[dict], eps: float = 0.5) -> list[str]:
    """Overlapping text boxes and text boxes outside their svg's viewBox, one line each."""
    out = []
    for svg in layout:
        x, y, w, h = svg["viewbox"]
        texts = svg["texts"]
        for t in texts:
            xs, ys = [p[0] for p in t["quad"]], [p[1] for p in t["quad"]]
            if min(xs) < x - eps or min(ys) < y - eps or max(xs) > x + w + eps or max(ys) > y + h + eps:
                out.append(f"{svg['plot']}: '{t['text']}' reaches outside the viewBox "
                           f"(x {min(xs):.1f}..{max(xs):.1f} of {x:g}..{x + w:g}, "
                           f"y {min(ys):.1f}..{max(ys):.1f} of {y:g}..{y + h:g})")
        for i, a in enumerate(texts):
            for b in texts[i + 1:]:
                if not _separated(a["quad"], b["quad"], eps):
                    out.append(f"{svg['plot']}: '{a['text']}' overlaps '{b['text']}'")
    return out


def screenshot(page_html_path, png, width: int = 1200, height: int | None = None, colors: int = 256) -> Path:
    """A PNG of the page at ``width`` px (height: the page's own unless given), reduced to a
    ``colors`` palette so it stays small."""
    page = Path(page_html_path).resolve()
    if height is None:  # the page's height, from the browser
        probe = "<script>document.title = 'H=' + document.documentElement.scrollHeight;</script>"
        with tempfile.TemporaryDirectory() as tmp:
            q = Path(tmp) / "h.html"
            q.write_text(page.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), encoding="utf-8")
            dom = _run([f"--window-size={width},800", "--dump-dom", q.as_uri()]).stdout
        m = re.search(r"<title>H=(\d+)</title>", dom)
        height = int(m.group(1)) if m else 1600
    png = Path(png)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.png"
        _run([f"--window-size={width},{height}", f"--screenshot={raw}", page.as_uri()])
        from PIL import Image

        Image.open(raw).convert("RGB").quantize(colors=colors).save(png, optimize=True)
    return png


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("--png", type=Path, help="also write a screenshot here")
    ap.add_argument("--width", type=int, default=1200)
    a = ap.parse_args(argv)
    found = problems(text_boxes(a.html.read_text(encoding="utf-8"), a.width))
    for line in found:
        print(line)
    if a.png:
        print(f"wrote {screenshot(a.html, a.png, a.width)}")
    print(f"{len(found)} layout problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
