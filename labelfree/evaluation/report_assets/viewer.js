/* labelfree HTML report: sortable case table and slice browser. The project's own code, no library.
 *
 * A case file (cases/case_NNN.js, written by labelfree/evaluation/html_report.py) calls
 * LF.caseLoaded(index, data). data.shape = [X, Y, Z] of the stored grid in RAS voxel order,
 * data.spacing in mm; every volume is base64 of a zlib stream of uint8 voxels, x fastest
 * (index x + X * (y + Y * z)). CT voxels are codes mapped to HU through the piecewise-linear
 * table data.codes (code -> hu). Display is radiological: axial slices with anterior up and the
 * patient's right on the left; coronal with superior up and right on the left; sagittal with
 * superior up and anterior on the left.
 */
(function () {
  "use strict";
  var LF = (window.LF = { cases: {}, decoded: {}, waiting: null });
  var AXIS_OF_VIEW = { sagittal: 0, coronal: 1, axial: 2 };
  var DISPLAY_SIZE = 460; // CSS pixels of a panel's longer side
  var state = { index: null, view: "axial", window: 0, hidden: {}, selected: -1, slice: [0, 0, 0] };

  // ---------------------------------------------------------------- table sorting
  function sortTable(th) {
    var table = th.closest("table");
    var column = Array.prototype.indexOf.call(th.parentNode.children, th);
    var ascending = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(ascending ? "asc" : "desc");
    var body = table.tBodies[0];
    var keyed = Array.prototype.map.call(body.rows, function (row) {
      var text = row.cells[column].getAttribute("data-value") || "";
      return { row: row, text: text, number: text === "" ? NaN : Number(text) };
    });
    var numeric = keyed.every(function (k) { return k.text === "" || k.text.toLowerCase() === "nan" || !isNaN(k.number); });
    keyed.sort(function (a, b) {
      if (numeric) {
        var aMissing = isNaN(a.number), bMissing = isNaN(b.number);
        if (aMissing || bMissing) return aMissing - bMissing; // missing values last, either way
        return ascending ? a.number - b.number : b.number - a.number;
      }
      var order = a.text.localeCompare(b.text, undefined, { numeric: true });
      return ascending ? order : -order;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
  }

  // ---------------------------------------------------------------- loading a case
  function viewer() { return document.getElementById("viewer"); }

  function openCase(index) {
    document.querySelectorAll("#cases tbody tr").forEach(function (row) {
      row.classList.toggle("open", Number(row.getAttribute("data-case")) === index);
    });
    LF.waiting = index;
    var root = viewer();
    root.hidden = false;
    root.removeAttribute("data-ready");
    if (LF.cases[index]) { show(index); return; }
    root.innerHTML = "<h2>loading case " + (index + 1) + "&hellip;</h2>";
    var script = document.createElement("script");
    script.src = "cases/case_" + String(index).padStart(3, "0") + ".js";
    script.onerror = function () { root.textContent = "cannot load " + script.src + " (the report's cases/ folder must stay beside index.html)"; };
    document.head.appendChild(script);
  }

  LF.caseLoaded = function (index, data) {
    LF.cases[index] = data;
    if (LF.waiting === index) show(index);
  };

  async function inflate(base64, length) {
    var text = atob(base64);
    var bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    var out = new Uint8Array(await new Response(stream).arrayBuffer());
    if (out.length !== length) throw new Error("volume of " + out.length + " voxels, expected " + length);
    return out;
  }

  async function decoded(index) {
    if (!LF.decoded[index]) {
      var data = LF.cases[index], n = data.shape[0] * data.shape[1] * data.shape[2];
      LF.decoded[index] = {
        panels: await Promise.all(data.panels.map(function (p) { return inflate(p.data, n); })),
        layers: await Promise.all(data.layers.map(function (l) { return inflate(l.data, n); })),
      };
    }
    return LF.decoded[index];
  }

  async function show(index) {
    var root = viewer(), data = LF.cases[index];
    try {
      state.volumes = await decoded(index);
    } catch (error) {
      root.textContent = "cannot decode case " + data.name + ": " + error.message;
      return;
    }
    if (LF.waiting !== index) return; // another case was opened meanwhile
    state.index = index;
    state.data = data;
    state.slice = data.start.slice();
    state.selected = -1;
    build(root, data);
    render();
  }

  // ---------------------------------------------------------------- the viewer's page part
  function escapeHtml(text) {
    return String(text).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; });
  }

  function caseFacts(index) {
    var row = document.querySelector('#cases tbody tr[data-case="' + index + '"]');
    if (!row) return "";
    var heads = document.querySelectorAll("#cases thead th");
    var facts = [];
    for (var i = 1; i < Math.min(row.cells.length, 9); i++) facts.push(heads[i].textContent + " " + row.cells[i].textContent);
    return facts.join(" &middot; ");
  }

  function build(root, data) {
    var html = [];
    html.push('<h2>' + escapeHtml(data.name) + ' <button type="button" id="previous-case">&#9664; previous</button> ' +
      '<button type="button" id="next-case">next &#9654;</button></h2>');
    html.push('<p class="facts">' + caseFacts(state.index) + '</p>');
    html.push('<div class="controls"><span>view ');
    ["axial", "coronal", "sagittal"].forEach(function (view) {
      html.push('<button type="button" data-view="' + view + '">' + view + "</button> ");
    });
    html.push('</span><label>window <select id="window-select">');
    data.windows.forEach(function (w, i) {
      html.push('<option value="' + i + '">' + escapeHtml(w.name) + " (" + w.low + " to " + w.high + " HU)</option>");
    });
    html.push("</select></label>");
    data.layers.forEach(function (layer) {
      var swatches = Object.keys(layer.colours).map(function (value) {
        return '<span class="swatch" style="border-color:' + escapeHtml(layer.colours[value]) + '"></span>';
      }).join("");
      html.push('<label><input type="checkbox" data-layer="' + escapeHtml(layer.name) + '"> ' + escapeHtml(layer.name) + swatches + "</label>");
    });
    html.push('<label>slice <input type="range" id="slice-range" min="0" step="1"></label><span id="slice-label"></span></div>');
    html.push('<div class="stage">');
    data.panels.forEach(function (panel) {
      html.push('<figure class="panel"><figcaption>' + escapeHtml(panel.title) + "</figcaption><canvas></canvas></figure>");
    });
    html.push('<div class="side"><h3>Lesions</h3>');
    if (data.lesions.length) {
      html.push('<table id="lesions"><thead><tr><th>lesion</th><th>radius (mm)</th><th>volume (ml)</th><th>status</th></tr></thead><tbody>');
      data.lesions.forEach(function (lesion, i) {
        html.push('<tr data-lesion="' + i + '" data-status="' + escapeHtml(lesion.status) + '" title="show its slice"><td>' +
          escapeHtml(lesion.text) + "</td><td>" + lesion.radius_mm.toFixed(1) + "</td><td>" + lesion.volume_ml.toFixed(2) +
          '</td><td class="status-' + lesion.status.replace(/ /g, "-") + '">' + escapeHtml(lesion.status) + "</td></tr>");
      });
      html.push("</tbody></table>");
      (data.notes || []).forEach(function (note) { html.push('<p class="hint">' + escapeHtml(note) + "</p>"); });
    } else {
      html.push('<p class="hint">no lesion in the reference or the prediction</p>');
    }
    html.push('<p class="hint">Wheel over the image or arrow keys: next / previous slice (Page Up / Down: 10); ' +
      "a, c, s: axial, coronal, sagittal. Click a lesion to show its slice.</p></div></div>");
    root.innerHTML = html.join("");

    root.querySelectorAll("button[data-view]").forEach(function (button) {
      button.addEventListener("click", function () { state.view = button.getAttribute("data-view"); render(); });
    });
    var select = root.querySelector("#window-select");
    select.value = String(Math.min(state.window, data.windows.length - 1));
    select.addEventListener("change", function () { state.window = Number(select.value); render(); });
    root.querySelectorAll("input[data-layer]").forEach(function (box) {
      var name = box.getAttribute("data-layer");
      box.checked = !state.hidden[name];
      box.addEventListener("change", function () { state.hidden[name] = !box.checked; render(); });
    });
    root.querySelector("#slice-range").addEventListener("input", function (event) {
      state.slice[AXIS_OF_VIEW[state.view]] = Number(event.target.value);
      render();
    });
    root.querySelectorAll("#lesions tbody tr").forEach(function (row) {
      row.addEventListener("click", function () { selectLesion(Number(row.getAttribute("data-lesion"))); });
    });
    root.querySelectorAll("canvas").forEach(function (canvas) {
      canvas.addEventListener("wheel", function (event) {
        event.preventDefault();
        move(event.deltaY > 0 ? 1 : -1);
      }, { passive: false });
    });
    root.querySelector("#previous-case").addEventListener("click", function () { neighbour(-1); });
    root.querySelector("#next-case").addEventListener("click", function () { neighbour(1); });
  }

  function neighbour(step) {
    var rows = Array.prototype.slice.call(document.querySelectorAll("#cases tbody tr"));
    var at = rows.findIndex(function (row) { return Number(row.getAttribute("data-case")) === state.index; });
    var next = rows[(at + step + rows.length) % rows.length];
    if (next) openCase(Number(next.getAttribute("data-case")));
  }

  function selectLesion(i) {
    state.selected = i;
    state.slice = state.data.lesions[i].slices.slice(); // its largest cross-section in every view
    render();
  }

  function move(step) {
    var axis = AXIS_OF_VIEW[state.view];
    state.slice[axis] = Math.max(0, Math.min(state.data.shape[axis] - 1, state.slice[axis] + step));
    render();
  }

  // ---------------------------------------------------------------- drawing
  /* The displayed plane of the current view: w x h pixels, their size in mm, and where pixel
     (column c, row r) of slice k lies in the volume: base(k) + c * dc + r * dr. */
  function plane() {
    var n = state.data.shape, s = state.data.spacing, nx = n[0], ny = n[1], nz = n[2];
    if (state.view === "axial") {
      return { w: nx, h: ny, su: s[0], sv: s[1], dc: -1, dr: -nx,
        base: function (k) { return (nx - 1) + (ny - 1) * nx + k * nx * ny; },
        point: function (p) { return [nx - 1 - p[0], ny - 1 - p[1]]; } };
    }
    if (state.view === "coronal") {
      return { w: nx, h: nz, su: s[0], sv: s[2], dc: -1, dr: -nx * ny,
        base: function (k) { return (nx - 1) + k * nx + (nz - 1) * nx * ny; },
        point: function (p) { return [nx - 1 - p[0], nz - 1 - p[2]]; } };
    }
    return { w: ny, h: nz, su: s[1], sv: s[2], dc: -nx, dr: -nx * ny,
      base: function (k) { return k + (ny - 1) * nx + (nz - 1) * nx * ny; },
      point: function (p) { return [ny - 1 - p[1], nz - 1 - p[2]]; } };
  }

  function cut(volume, g, k) {
    var out = new Uint8Array(g.w * g.h), base = g.base(k), i = 0;
    for (var r = 0; r < g.h; r++) {
      var at = base + r * g.dr;
      for (var c = 0; c < g.w; c++, at += g.dc) out[i++] = volume[at];
    }
    return out;
  }

  function grayTable() {
    var codes = state.data.codes, w = state.data.windows[state.window] || state.data.windows[0];
    var table = new Uint8Array(256);
    for (var code = 0; code < 256; code++) {
      var j = 1;
      while (j < codes.code.length - 1 && code > codes.code[j]) j++;
      var t = (code - codes.code[j - 1]) / (codes.code[j] - codes.code[j - 1]);
      var hu = codes.hu[j - 1] + Math.max(0, Math.min(1, t)) * (codes.hu[j] - codes.hu[j - 1]);
      table[code] = Math.round(255 * Math.max(0, Math.min(1, (hu - w.low) / (w.high - w.low))));
    }
    return table;
  }

  function outline(context, labels, value, g, px, py) {
    context.beginPath();
    for (var r = 0, i = 0; r < g.h; r++) {
      for (var c = 0; c < g.w; c++, i++) {
        if (labels[i] !== value) continue;
        var x0 = c * px, x1 = (c + 1) * px, y0 = r * py, y1 = (r + 1) * py;
        if (c === 0 || labels[i - 1] !== value) { context.moveTo(x0, y0); context.lineTo(x0, y1); }
        if (c === g.w - 1 || labels[i + 1] !== value) { context.moveTo(x1, y0); context.lineTo(x1, y1); }
        if (r === 0 || labels[i - g.w] !== value) { context.moveTo(x0, y0); context.lineTo(x1, y0); }
        if (r === g.h - 1 || labels[i + g.w] !== value) { context.moveTo(x0, y1); context.lineTo(x1, y1); }
      }
    }
    context.stroke();
  }

  function render() {
    var root = viewer(), data = state.data, g = plane(), axis = AXIS_OF_VIEW[state.view];
    var k = state.slice[axis];
    var scale = DISPLAY_SIZE / Math.max(g.w * g.su, g.h * g.sv); // CSS pixels per mm
    var width = Math.round(g.w * g.su * scale), height = Math.round(g.h * g.sv * scale);
    var px = width / g.w, py = height / g.h;
    var gray = grayTable();
    var layers = data.layers.map(function (layer, i) {
      return state.hidden[layer.name] ? null : cut(state.volumes.layers[i], g, k);
    });
    root.querySelectorAll("canvas").forEach(function (canvas, p) {
      if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
      var slice = cut(state.volumes.panels[p], g, k);
      var image = new ImageData(g.w, g.h);
      for (var i = 0; i < slice.length; i++) {
        var v = gray[slice[i]];
        image.data[4 * i] = v; image.data[4 * i + 1] = v; image.data[4 * i + 2] = v; image.data[4 * i + 3] = 255;
      }
      var buffer = document.createElement("canvas");
      buffer.width = g.w; buffer.height = g.h;
      buffer.getContext("2d").putImageData(image, 0, 0);
      var context = canvas.getContext("2d");
      context.imageSmoothingEnabled = true;
      context.drawImage(buffer, 0, 0, width, height);
      data.layers.forEach(function (layer, l) {
        if (!layers[l]) return;
        context.lineWidth = layer.line_width;
        Object.keys(layer.colours).forEach(function (value) {
          context.strokeStyle = layer.colours[value];
          outline(context, layers[l], Number(value), g, px, py);
        });
      });
      var lesion = data.lesions[state.selected];
      if (lesion && lesion.slices[axis] === k) {
        var at = g.point(lesion.centre);
        context.strokeStyle = "white";
        context.lineWidth = 1;
        context.setLineDash([3, 3]);
        context.beginPath();
        context.arc((at[0] + 0.5) * px, (at[1] + 0.5) * py, Math.max(14, 1.6 * lesion.radius_mm * scale + 6), 0, 2 * Math.PI);
        context.stroke();
        context.setLineDash([]);
      }
    });
    root.querySelectorAll("button[data-view]").forEach(function (button) {
      button.classList.toggle("on", button.getAttribute("data-view") === state.view);
    });
    root.querySelectorAll("#lesions tbody tr").forEach(function (row) {
      row.classList.toggle("selected", Number(row.getAttribute("data-lesion")) === state.selected);
    });
    var range = root.querySelector("#slice-range");
    range.max = String(data.shape[axis] - 1);
    range.value = String(k);
    root.querySelector("#slice-label").textContent = state.view + " " + (k + 1) + " / " + data.shape[axis];
    root.setAttribute("data-view", state.view);
    root.setAttribute("data-slice", String(k));
    root.setAttribute("data-case", String(state.index));
    root.setAttribute("data-ready", "1");
  }

  // ---------------------------------------------------------------- keys and start
  document.addEventListener("keydown", function (event) {
    var root = viewer();
    if (!root || root.hidden || !state.data || event.altKey || event.ctrlKey || event.metaKey) return;
    var target = event.target;
    if (target && (target.tagName === "SELECT" || (target.tagName === "INPUT" && target.type === "range"))) return;
    var steps = { ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1, PageUp: 10, PageDown: -10 };
    var views = { a: "axial", c: "coronal", s: "sagittal" };
    if (event.key in steps) { event.preventDefault(); move(steps[event.key]); }
    else if (event.key in views) { state.view = views[event.key]; render(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable th").forEach(function (th) {
      th.addEventListener("click", function () { sortTable(th); });
    });
    document.querySelectorAll("#cases tbody tr").forEach(function (row) {
      var open = function () { openCase(Number(row.getAttribute("data-case"))); };
      row.addEventListener("click", open);
      row.addEventListener("keydown", function (event) { if (event.key === "Enter") open(); });
    });
    var first = document.querySelector("#cases tbody tr");
    if (first) openCase(Number(first.getAttribute("data-case")));
  });
})();
