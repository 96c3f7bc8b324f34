"""report.html as a reader gets it: rendered by headless Chromium, checked on the live DOM.

A probe script appended to a copy of the page runs after the page's own script, clicks and types
like a reader (sort by a column, filter a table), measures the layout with every collapsed section
open, and writes what it found into the DOM, which ``chromium --dump-dom`` returns.
"""

import html
import json
import re
import shutil
import subprocess

import pytest

from secsplit.evaluation import findings, tables
from secsplit.evaluation.report import write_report
from secsplit.evaluation.results import append_row, load_rows

from report_rows import image_rows, label_rows

PROBE = """<script>
window.addEventListener('load', function () {
  var out = {};
  try {
    var worst = document.querySelector('#findings li.finding .worst');
    out.findings_first = document.querySelector('main > section').id;
    out.worst = worst ? worst.textContent : null;
    out.images = Array.prototype.map.call(document.images, function (i) { return i.complete && i.naturalWidth > 0; });
    var table = document.querySelector('table.results');
    var heads = Array.prototype.map.call(table.tHead.rows[0].cells, function (th) { return th.textContent.trim(); });
    var col = heads.indexOf('leak 0-1');
    var button = table.tHead.rows[0].cells[col].querySelector('button');
    var column = function () {
      return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return Number(r.cells[col].getAttribute('data-sort')); });
    };
    button.click(); out.ascending = column();
    button.click(); out.descending = column();
    var box = table.previousElementSibling;
    box.value = 'marvell'; box.dispatchEvent(new Event('input'));
    out.shown = Array.prototype.filter.call(table.tBodies[0].rows, function (r) { return !r.hidden; })
      .map(function (r) { return r.textContent; });
    out.rows = table.tBodies[0].rows.length;
    document.querySelectorAll('details').forEach(function (d) { d.open = true; });
    var width = document.documentElement.clientWidth;
    out.width = width; out.scroll_width = document.documentElement.scrollWidth;
    out.overflowing = Array.prototype.filter.call(document.querySelectorAll('body *'), function (e) {
      var r = e.getBoundingClientRect(); return r.width > 0 && (r.right > width + 1 || r.left < -1);
    }).map(function (e) { return e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''); });
  } catch (error) { out.error = String(error); }
  var pre = document.createElement('pre'); pre.id = 'probe-result'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (.ci/run installs it from Debian's packages)")
    return browser


def run_chromium(tmp_path, page, *args, width=1280, height=1600):
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},{height}",
                           *args, page.as_uri()], check=True, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    for row in label_rows() + image_rows():
        append_row(folder / "results.jsonl", row)
    return write_report(folder / "results.jsonl", folder / "out")


def probe(tmp_path, report, width: int) -> dict:
    page = tmp_path / f"probed-{width}.html"
    page.write_text(report["html"].read_text().replace("</body>", PROBE + "</body>"))
    dom = run_chromium(tmp_path, page, "--dump-dom", "--virtual-time-budget=10000", width=width).stdout
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', dom, re.S)
    assert found, "the probe script did not run"
    result = json.loads(html.unescape(found.group(1)))
    assert "error" not in result, result["error"]
    return result


@pytest.mark.parametrize("width", [1280, 1024])
def test_rendered_report_leads_with_findings_loads_images_sorts_filters_and_fits(tmp_path, report, width):
    result = probe(tmp_path, report, width)
    rows = load_rows(report["html"].parent.parent / "results.jsonl")
    worst = findings.findings(tables.table_records(rows))[0]
    assert result["findings_first"] == "findings"
    assert result["worst"] == worst.worst  # the page's first finding is the worst leak the rows hold
    assert "norm-attack from the client seat" in result["worst"]
    assert result["images"] and all(result["images"])
    assert result["ascending"] == sorted(result["ascending"]) and result["descending"] == sorted(result["descending"],
                                                                                                 reverse=True)
    assert result["ascending"] != result["descending"]
    assert 0 < len(result["shown"]) < result["rows"] and all("marvell" in text for text in result["shown"])
    assert result["scroll_width"] <= result["width"] and result["overflowing"] == []


def test_screenshot_shows_the_page(tmp_path, report):
    shot = tmp_path / "report.png"
    run_chromium(tmp_path, report["html"], f"--screenshot={shot}", height=1400)
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1280, 1400)
    histogram = image.histogram()
    assert sum(histogram[:128]) > 0.01 * sum(histogram)  # text and findings drew dark pixels
