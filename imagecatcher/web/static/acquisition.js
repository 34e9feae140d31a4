/* One acquisition's mosaic, drawn on a canvas and refreshed every second from
   GET /service/v1/acquisition/<acqid>/live (one query on the server per refresh). */
"use strict";
(function () {
  var COLOURS = {
    outside: "#e9ecef",     // no tile and outside any ROI (or no ROIs at all)
    expected: "#a5b4c8",    // an ROI tile not captured yet
    spooled: "#f59f00",     // accepted, waiting in a spool for the store
    stored: "#2f9e44",      // in the store (READY)
    IN_PROGRESS: "#4dabf7", // handed to a renderer
    COMPLETE: "#1864ab",    // rendered
    FAILED: "#e03131",      // the renderer failed it
    other: "#9c36b5"        // any other render state
  };
  var LABELS = {
    outside: "outside any ROI",
    expected: "expected, not captured",
    spooled: "in the spool, not yet stored",
    stored: "stored (READY)",
    IN_PROGRESS: "render: in progress",
    COMPLETE: "render: complete",
    FAILED: "render: failed"
  };
  var acqid = decodeURIComponent(window.location.pathname.split("/").filter(Boolean).pop());
  var canvas = document.getElementById("grid");
  var ctx = canvas.getContext("2d");
  var doc = null;
  var cellSize = 8;
  var byCell = new Map();   // "col,row" -> tile index (in doc.tiles / 6)
  var selected = null;

  function colour(state) { return COLOURS[state] || COLOURS.other; }

  function camera() { return document.getElementById("camera").value; }

  function fit() {
    // The whole mosaic in view where it fits: the box's width, the window's height.
    var box = canvas.parentElement.parentElement;
    var width = Math.max(box.clientWidth - 4, 200);
    var height = Math.max(window.innerHeight - canvas.parentElement.getBoundingClientRect().top - 70, 200);
    var size = Math.floor(Math.min(width / Math.max(doc.cols, 1), height / Math.max(doc.rows, 1)));
    return Math.max(3, Math.min(size, 20));
  }

  function draw() {
    cellSize = fit();
    var w = doc.cols * cellSize, h = doc.rows * cellSize;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    canvas.dataset.cell = cellSize;
    canvas.dataset.cols = doc.cols;
    canvas.dataset.rows = doc.rows;
    ctx.fillStyle = COLOURS.outside;
    ctx.fillRect(0, 0, w, h);
    var gap = cellSize >= 5 ? 1 : 0;
    var t = doc.tiles, cam = camera();
    byCell = new Map();
    for (var i = 0; i < t.length; i += 6) {
      var tileCam = t[i + 3];
      if (cam !== "all" && tileCam !== -1 && String(tileCam) !== cam) { continue; }
      byCell.set(t[i + 1] + "," + t[i + 2], i / 6);
      ctx.fillStyle = colour(doc.states[t[i + 4]]);
      ctx.fillRect(t[i + 1] * cellSize, t[i + 2] * cellSize, cellSize - gap, cellSize - gap);
    }
    if (selected !== null) {
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1;
      ctx.strokeRect(selected.col * cellSize + 0.5, selected.row * cellSize + 0.5,
                     cellSize - 1, cellSize - 1);
    }
  }

  function legend() {
    var list = document.getElementById("legend");
    var items = document.createDocumentFragment();
    var names = ["outside"].concat(doc.states);
    names.forEach(function (name) {
      var li = document.createElement("li");
      li.dataset.state = name;
      var swatch = IC.el("span", null, "swatch");
      swatch.style.backgroundColor = colour(name);
      li.appendChild(swatch);
      li.appendChild(IC.el("span", LABELS[name] || ("render: " + name)));
      var n = name === "outside" ? "" : doc.counts[name];
      li.appendChild(IC.el("span", n, "count"));
      items.appendChild(li);
    });
    list.replaceChildren(items);
  }

  function cameras() {
    var select = document.getElementById("camera");
    if (select.options.length > 1) { return; }
    var seen = new Set();
    for (var i = 3; i < doc.tiles.length; i += 6) { if (doc.tiles[i] >= 0) { seen.add(doc.tiles[i]); } }
    for (var c = 0; c < doc.cameras; c++) { seen.add(c); }
    Array.from(seen).sort(function (a, b) { return a - b; }).forEach(function (c) {
      var option = IC.el("option", "camera " + c);
      option.value = String(c);
      select.appendChild(option);
    });
  }

  function facts() {
    document.title = "imagecatcher: " + doc.acqid;
    IC.text("title", doc.sample + " \u00b7 " + doc.acqid);
    IC.text("sample", doc.sample);
    IC.text("started", IC.when(doc.started));
    IC.text("ended", doc.completed ? IC.when(doc.completed) : "no (capturing)");
    IC.text("grid-size", doc.cols + " \u00d7 " + doc.rows + " cells, " + doc.cameras +
            " camera(s), " + doc.tiles_total + " tiles known");
    IC.text("rate", IC.rate(doc.rate.tiles_per_second) + " tiles/s (last " + doc.rate.seconds + " s)");
    var spark = document.getElementById("spark");
    var peak = Math.max.apply(null, doc.rate.per_minute.concat([1]));
    spark.replaceChildren.apply(spark, doc.rate.per_minute.map(function (n) {
      var bar = IC.el("span");
      bar.style.height = Math.round(100 * n / peak) + "%";
      bar.title = n + " tiles";
      return bar;
    }));
    IC.text("last", doc.last ? ("tile " + doc.last.id + " (col " + doc.last.col + ", row " +
            doc.last.row + ") at " + IC.when(doc.last.received)) : "none in the last 10 minutes");
    var cam = camera();
    var link = document.getElementById("mosaic-link");
    link.href = IC.API + "/acquisition/" + encodeURIComponent(doc.acqid) + "/mosaic.png?scale=8" +
      (cam === "all" ? "" : "&camera=" + cam);
  }

  function load() {
    return IC.getJSON("/acquisition/" + encodeURIComponent(acqid) + "/live").then(function (d) {
      doc = d;
      cameras();
      facts();
      legend();
      draw();
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    });
  }

  // tile_acquired is yyyyMMddHHmmss.ffffff in UTC (CONTRACT §1.10).
  function stamp(text) {
    var m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})/.exec(text || "");
    return m ? m[1] + "-" + m[2] + "-" + m[3] + " " + m[4] + ":" + m[5] + ":" + m[6] + " UTC" : text;
  }

  function tileAt(event) {
    if (!doc) { return null; }
    var rect = canvas.getBoundingClientRect();
    var col = Math.floor((event.clientX - rect.left) / cellSize);
    var row = Math.floor((event.clientY - rect.top) / cellSize);
    var index = byCell.get(col + "," + row);
    if (index === undefined) { return { col: col, row: row, id: null }; }
    var t = doc.tiles, i = index * 6;
    return { id: t[i], col: t[i + 1], row: t[i + 2], camera: t[i + 3],
             state: doc.states[t[i + 4]],
             section: t[i + 5] >= 0 ? doc.sections[t[i + 5]] : null };
  }

  function describe(tile) {
    if (tile.id === null) { return "col " + tile.col + ", row " + tile.row + ": no tile"; }
    return "tile " + tile.id + " \u00b7 col " + tile.col + ", row " + tile.row +
      (tile.camera >= 0 ? ", camera " + tile.camera : "") + " \u00b7 " +
      (LABELS[tile.state] || tile.state) +
      (tile.section !== null ? " \u00b7 section " + tile.section : " \u00b7 outside any ROI");
  }

  function showDetails(tile) {
    selected = tile;
    draw();
    var aside = document.getElementById("details");
    aside.hidden = false;
    aside.dataset.tile = tile.id;
    IC.text("d-id", tile.id);
    IC.text("d-col", tile.col);
    IC.text("d-row", tile.row);
    IC.text("d-camera", tile.camera >= 0 ? tile.camera : "unknown");
    IC.text("d-state", LABELS[tile.state] || tile.state);
    IC.text("d-section", tile.section !== null ? tile.section : "outside any ROI");
    ["d-frame", "d-stored", "d-checksum", "d-path"].forEach(function (id) { IC.text(id, "\u2026"); });
    var content = document.getElementById("d-content");
    var img = document.getElementById("d-preview");
    var stored = !(tile.state === "expected" || tile.state === "spooled");
    content.hidden = !stored;
    content.href = IC.API + "/tile/" + tile.id + "/content";
    img.hidden = !stored;
    img.removeAttribute("src");
    IC.text("d-preview-note", stored ? "loading preview\u2026" : "no content in the store yet");
    if (stored) {
      img.onload = function () { IC.text("d-preview-note", img.naturalWidth + " \u00d7 " + img.naturalHeight + " preview"); };
      img.onerror = function () { IC.text("d-preview-note", "no preview"); };
      img.src = IC.API + "/tile/" + tile.id + "/preview?size=256";
    }
    IC.getJSON("/tile/" + tile.id).then(function (info) {
      if (String(aside.dataset.tile) !== String(tile.id)) { return; }
      IC.text("d-frame", info.tile_frame === undefined ? "-1" : info.tile_frame);
      if (info.tile_camera !== undefined) { IC.text("d-camera", info.tile_camera); }
      IC.text("d-stored", stamp(info.tile_acquired) || "not yet");
      IC.text("d-checksum", info.tile_file_checksum || "none");
      IC.text("d-path", info.tile_jfs_path || "");
      IC.text("d-state", info.state || LABELS[tile.state] || tile.state);
      aside.dataset.loaded = String(tile.id);
    }, function (error) {
      IC.text("d-stored", "cannot read the tile: " + error.message);
    });
  }

  canvas.addEventListener("mousemove", function (event) {
    var tile = tileAt(event);
    if (tile) { IC.text("hover", describe(tile)); }
  });
  canvas.addEventListener("click", function (event) {
    var tile = tileAt(event);
    if (tile && tile.id !== null) { showDetails(tile); }
  });
  document.getElementById("d-close").addEventListener("click", function () {
    document.getElementById("details").hidden = true;
    selected = null;
    draw();
  });
  document.getElementById("camera").addEventListener("change", function () {
    if (doc) { facts(); draw(); }
  });
  window.addEventListener("resize", function () { if (doc) { draw(); } });
  IC.poll(load, 1000);
})();
