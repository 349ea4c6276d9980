// Draws each chart of the incident page with Observable Plot (vendored beside this file) from
// the page's embedded JSON; the toggle switches every chart and table between the clocks.
(function () {
  const charts = JSON.parse(document.getElementById("chart-data").textContent);
  const toggle = document.getElementById("clock-toggle");
  const label = document.getElementById("clock-label");
  const parse = (t) => (t ? new Date(t) : null);

  function withEnd(points, clock) {
    // A step holds until the next point: each source's last figure is drawn on to the end.
    const times = points.map((p) => +parse(p.t));
    const first = Math.min(...times), last = Math.max(...times);
    // at least a day on the published clock, a minute on the recorded one (entries are seconds apart)
    const end = new Date(last + Math.max((last - first) * 0.08, clock === "recorded" ? 60e3 : 86400e3));
    const out = [], lastOf = new Map();
    for (const p of points) {
      const point = { ...p, date: parse(p.t) }, before = lastOf.get(p.source);
      // a figure holds until a retraction ends it: the step runs up to the gap
      if (point.line === null && before && before.line !== null) out.push({ ...before, date: point.date, what: "(held)" });
      out.push(point);
      lastOf.set(p.source, point);
    }
    for (const p of lastOf.values()) out.push({ ...p, date: end, what: "(still)" });
    return out;
  }

  function draw(chart, clock) {
    const figure = document.getElementById(chart.id);
    const points = withEnd(chart[clock], clock);
    const marks = chart.marks.filter((m) => m.kind !== "merged" && (clock === "recorded" ? m.recorded : m.published));
    const merges = chart.marks.filter((m) => m.kind === "merged" && clock === "recorded");
    const at = (m) => parse(clock === "recorded" ? m.recorded : m.published);
    const title = (m) => `${m.kind} ${m.source ?? m.merged} ${m.version ? "v" + m.version : ""}: ${m.reason ?? ""} (by ${m.by})`;
    const plot = Plot.plot({
      width: Math.min(figure.clientWidth || 900, 1000), height: 280, marginLeft: 50, marginBottom: 52,
      x: { type: "utc", labelOffset: 46, label: clock === "recorded" ? "recorded at →" : "published at →" },
      y: { grid: true, zero: true, label: `${chart.measure} / ${chart.group}` },
      color: { legend: true, domain: chart.sources },
      marks: [
        Plot.areaY(points, { x: "date", y1: "low", y2: "high", fill: "source", fillOpacity: 0.18, curve: "step-after" }),
        Plot.line(points, { x: "date", y: "line", stroke: "source", strokeWidth: 2, curve: "step-after",
                            className: "figure-line" }),
        Plot.dot(points.filter((p) => !p.what.startsWith("(") && p.line !== null),
                 { x: "date", y: "line", fill: "source", r: 2.5, title: (p) => `${p.source}: ${p.what}` }),
        Plot.dot(marks.filter((m) => m.kind === "corrected"),
                 { x: at, y: "y", r: 6, stroke: "#1f5fbf", strokeWidth: 2, fill: "white", title, className: "correction" }),
        Plot.dot(marks.filter((m) => m.kind === "retracted"),
                 { x: at, y: "y", r: 6, symbol: "times", stroke: "#a40000", strokeWidth: 2.5, title, className: "retraction" }),
        Plot.ruleX(merges, { x: at, stroke: "#d4a000", strokeWidth: 2, strokeDasharray: "4,3", title, className: "merge" }),
        Plot.ruleY([0]),
      ],
    });
    figure.dataset.clock = clock;
    figure.replaceChildren(plot);
  }

  function show(clock) {
    for (const chart of charts) draw(chart, clock);
    for (const table of document.querySelectorAll("details.as-table")) {
      table.hidden = !table.classList.contains("view-" + clock);
    }
    toggle.dataset.clock = clock;
    toggle.setAttribute("aria-pressed", clock === "recorded" ? "true" : "false");
    toggle.textContent = clock === "recorded" ? "show published time" : "show recorded time";
    label.textContent = clock === "recorded" ? "recorded time: what the store held after each entry"
                                             : "published time: each source's figure from when it was published";
    const url = new URL(location.href);
    if (clock === "recorded") url.searchParams.set("clock", "recorded"); else url.searchParams.delete("clock");
    url.searchParams.delete("done"); url.searchParams.delete("error");
    history.replaceState(null, "", url);
  }

  toggle.addEventListener("click", () => show(toggle.dataset.clock === "recorded" ? "published" : "recorded"));
  show(toggle.dataset.clock);
  document.body.dataset.chartsDrawn = String(charts.length);
})();
