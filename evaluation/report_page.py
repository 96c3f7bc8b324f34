"""The report page's inline style and script (kept in Python so the package needs no data files).

The script only enhances: it makes column headings sort their table and adds a filter box above
each table. With scripts off the same tables are all there, unsorted and unfiltered. No network.
"""

CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d1d1f;background:#fff}
main{max-width:1200px;margin:0 auto;padding:1.5em 1.25em 3em}
h1{font-size:1.7em;margin:.2em 0}h2{font-size:1.35em;margin:1.8em 0 .5em;border-bottom:2px solid #0072B2;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.4em 0 .3em}
.meta{color:#555;margin:.2em 0 .8em}
nav{display:flex;flex-wrap:wrap;gap:.3em 1.2em;font-size:.9em}
nav a{color:#0072B2}
.lead{color:#333;max-width:72em}
ol.findings{list-style:none;padding:0;margin:0}
li.finding{border-left:6px solid #D55E00;background:#faf7f4;margin:.8em 0;padding:.5em 1em}
li.finding h3{margin:.2em 0 .3em;display:flex;flex-wrap:wrap;align-items:baseline;gap:.6em}
li.finding p{margin:.25em 0}
li.finding .worst{font-weight:600}
li.finding .caution{color:#8a4b00;font-style:italic}
li.finding .exposure{color:#8a1c00}
.leak{font-size:.8em;font-weight:600;color:#fff;padding:.05em .55em;border-radius:1em;
 background:color-mix(in srgb,#D55E00 calc(var(--leak)*100%),#0072B2)}
figure{margin:1.2em 0}
figure img{display:block;width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.9em;color:#444;margin-top:.3em}
.grids{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:.8em}
.grids figure{margin:0}
table.results{border-collapse:collapse;width:100%;font-size:12.5px;margin:.4em 0 1em}
table.results th,table.results td{border:1px solid #d0d0d0;padding:3px 5px;vertical-align:top}
table.results th{background:#eef3f8;position:relative}
table.results td.text,table.results th.text{text-align:left;overflow-wrap:break-word}
table.results td.num,table.results th.num{text-align:right}
table.results tbody tr:nth-child(even){background:#fafafa}
th button{all:unset;cursor:pointer;display:block;width:100%}
th button:focus-visible{outline:2px solid #0072B2}
th[aria-sort=ascending] button::after{content:' \\25B2';font-size:.8em}
th[aria-sort=descending] button::after{content:' \\25BC';font-size:.8em}
input.filter{font:inherit;font-size:.9em;padding:.2em .5em;width:22em;max-width:100%;border:1px solid #aaa;border-radius:4px}
.threat{margin:.1em 0 .4em;color:#333;font-size:.92em}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
details li{margin:.2em 0}.who{color:#666;font-size:.9em;overflow-wrap:anywhere}
pre{background:#f6f6f6;padding:1em;white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px}
"""

JS = """
(function () {
  function key(cell) {
    var raw = cell.getAttribute('data-sort');
    if (raw === null || raw === '') return null;
    var n = Number(raw);
    return isNaN(n) ? raw.toLowerCase() : n;
  }
  function compare(a, b) {
    if (a === null) return b === null ? 0 : 1;
    if (b === null) return -1;
    if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
    return typeof a === 'number' ? -1 : 1;
  }
  function sortBy(table, index, th) {
    var descending = th.getAttribute('aria-sort') === 'ascending';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = key(r.cells[index]), b = key(s.cells[index]);
      if (a === null || b === null) return compare(a, b);  /* blanks last either way */
      return descending ? compare(b, a) : compare(a, b);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function filter(table, text) {
    var needle = text.trim().toLowerCase();
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      r.hidden = needle !== '' && r.textContent.toLowerCase().indexOf(needle) < 0;
    });
  }
  document.querySelectorAll('table.results').forEach(function (table, n) {
    table.querySelectorAll('thead th').forEach(function (th, index) {
      var button = document.createElement('button');
      button.type = 'button';
      button.textContent = th.textContent;
      button.title = 'sort by ' + th.textContent;
      th.textContent = '';
      th.appendChild(button);
      button.addEventListener('click', function () { sortBy(table, index, th); });
    });
    var box = document.createElement('input');
    box.type = 'search';
    box.className = 'filter';
    box.placeholder = 'Filter rows (e.g. a defense or topology)';
    box.setAttribute('aria-label', 'filter the rows of the next table');
    box.addEventListener('input', function () { filter(table, box.value); });
    table.parentNode.insertBefore(box, table);
  });
})();
"""
