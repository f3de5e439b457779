/* Lifestats HTML report: draws the series with uPlot from the JSON embedded in the page.
   Data is read with JSON.parse and every label is set as text by uPlot (textContent), never as markup. */
(function () {
  "use strict";
  var source = document.getElementById("series-data");
  var box = document.getElementById("series-chart");
  if (!source || !box || typeof uPlot === "undefined") return;
  var data = JSON.parse(source.textContent);
  var n = data.labels.length;
  if (n === 0) return;
  var xs = new Array(n);
  for (var i = 0; i < n; i++) xs[i] = i;
  var whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });
  function count(u, v) { return v == null ? "-" : whole.format(v); }
  function label(u, v) { return v == null ? "-" : data.labels[Math.round(v)]; }
  var series = [{ label: data.bucket, value: label }];
  var columns = [xs];
  var bands = [];
  function add(name, values, color, fill, bounds) {
    columns.push(values);
    series.push({ label: name, stroke: color, fill: fill, width: n > 1000 ? 1 : 1.5, value: count });
    if (bounds) {
      var at = columns.length - 1;
      columns.push(bounds[0], bounds[1]);
      series.push({ label: name + " lower", stroke: color, width: 0, dash: [2, 2], value: count },
                  { label: name + " upper", stroke: color, width: 0, dash: [2, 2], value: count });
      bands.push({ series: [at + 2, at + 1], fill: fill || "rgba(0,0,0,.08)" });
    }
  }
  add("visits", data.visits, "#2563eb", "rgba(37,99,235,.10)", data.visits_bounds);
  if (data.visitors) add("distinct visitors", data.visitors, "#d97706", null, data.visitors_bounds);
  function size() {
    var width = Math.max(box.clientWidth, 200);
    return { width: width, height: width < 560 ? 240 : 340 };
  }
  var opts = size();
  opts.scales = { x: { time: false } };
  opts.series = series;
  opts.bands = bands;
  opts.legend = { live: true };
  opts.cursor = { drag: { x: true, y: false } };
  opts.axes = [
    {
      space: Math.max(70, data.short[0].length * 7 + 28),
      incrs: [1, 2, 3, 4, 6, 7, 12, 14, 24, 28, 30, 48, 60, 90, 120, 168, 180, 365, 500, 730, 1000, 1440,
              2000, 2500, 5000, 10000, 20000, 50000],
      values: function (u, splits) {
        return splits.map(function (s) { return Number.isInteger(s) && s >= 0 && s < n ? data.short[s] : ""; });
      }
    },
    { size: 56, values: function (u, splits) { return splits.map(function (s) { return compact.format(s); }); } }
  ];
  var plot = new uPlot(opts, columns, box);
  var pending = null;
  window.addEventListener("resize", function () {
    if (pending) cancelAnimationFrame(pending);
    pending = requestAnimationFrame(function () { plot.setSize(size()); });
  });
})();
