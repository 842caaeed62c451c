// Drag across the chart to fill the marking form's "from" and "to" (UTC, RFC 3339).
// The page's CSP allows only this file: no inline script, no library.
(function () {
  "use strict";
  var svg = document.getElementById("chart");
  var sel = document.getElementById("selection");
  var from = document.getElementById("mark-start");
  var to = document.getElementById("mark-end");
  if (!svg || !sel || !from || !to) return;
  var start = parseFloat(svg.dataset.start), end = parseFloat(svg.dataset.end);
  var width = parseFloat(svg.dataset.width);
  var anchor = null;

  function chartX(ev) {
    var box = svg.getBoundingClientRect();
    var x = (ev.clientX - box.left) / box.width * width;
    return Math.min(Math.max(x, 0), width);
  }
  function iso(x) {
    var t = start + (end - start) * x / width;
    return new Date(Math.round(t) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
  }
  function show(a, b) {
    sel.setAttribute("x", Math.min(a, b));
    sel.setAttribute("width", Math.abs(b - a));
  }
  svg.addEventListener("mousedown", function (ev) {
    anchor = chartX(ev);
    show(anchor, anchor);
    ev.preventDefault();
  });
  svg.addEventListener("mousemove", function (ev) {
    if (anchor !== null) show(anchor, chartX(ev));
  });
  window.addEventListener("mouseup", function (ev) {
    if (anchor === null) return;
    var x = chartX(ev), a = Math.min(anchor, x), b = Math.max(anchor, x);
    anchor = null;
    if (b - a < 1) return;
    from.value = iso(a);
    to.value = iso(b);
  });
})();
