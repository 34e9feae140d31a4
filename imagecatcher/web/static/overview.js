/* The overview: recent acquisitions first, a page at a time, refreshed every 2 s. */
"use strict";
(function () {
  var LENGTH = 25;
  var params = new URLSearchParams(window.location.search);
  var offset = Math.max(parseInt(params.get("offset") || "0", 10) || 0, 0);
  var total = 0;

  function cell(row, content, cls) {
    var td = IC.el("td", content, cls);
    row.appendChild(td);
    return td;
  }

  function render(doc) {
    total = doc.total;
    var body = document.querySelector("#acquisitions tbody");
    var rows = document.createDocumentFragment();
    doc.acquisitions.forEach(function (a) {
      var tr = document.createElement("tr");
      tr.dataset.acqid = a.acqid;
      if (!a.ended) { tr.classList.add("active"); }
      cell(tr, a.sample);
      var link = IC.el("a", a.acqid);
      link.href = "/ui/acquisition/" + encodeURIComponent(a.acqid);
      cell(tr, "").appendChild(link);
      cell(tr, IC.when(a.started));
      cell(tr, a.cameras, "num");
      var progress = cell(tr, "");
      var bar = IC.el("span", null, "bar");
      var fill = IC.el("span");
      fill.style.width = (a.expected ? Math.min(100, 100 * a.stored / a.expected) : 0) + "%";
      bar.appendChild(fill);
      progress.appendChild(bar);
      progress.appendChild(document.createTextNode(a.stored + " / " + a.expected));
      if (a.expected_from === "grid") { progress.title = "expected: the whole grid (no ROIs)"; }
      cell(tr, IC.rate(a.tiles_per_second), "num");
      cell(tr, a.spooled, a.spooled ? "num warn" : "num");
      cell(tr, a.failed, a.failed ? "num bad" : "num");
      cell(tr, a.ended ? "yes" : "no");
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
    var last = Math.min(offset + doc.acquisitions.length, total);
    IC.text("range", total ? (offset + 1) + "\u2013" + last + " of " + total : "no acquisitions");
    document.getElementById("newer").disabled = offset <= 0;
    document.getElementById("older").disabled = offset + LENGTH >= total;
  }

  function load() {
    return IC.getJSON("/live/acquisitions?offset=" + offset + "&length=" + LENGTH).then(render);
  }

  function go(to) {
    offset = Math.max(to, 0);
    var url = new URL(window.location.href);
    url.searchParams.set("offset", String(offset));
    window.history.replaceState(null, "", url);
    load();
  }

  document.getElementById("newer").addEventListener("click", function () { go(offset - LENGTH); });
  document.getElementById("older").addEventListener("click", function () { go(offset + LENGTH); });
  IC.poll(load, 2000);
})();
