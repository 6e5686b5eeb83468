/* banditlake experiment dashboard: plain JavaScript over the /dashboard/api JSON panels,
   charts drawn with the vendored uPlot. Every value from the server goes into the page as
   text (textContent), never as HTML. */
(function () {
  "use strict";

  const REFRESH_MS = 5000;
  const TOKEN_KEY = "banditlake.adminToken";
  const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777"];
  const API = "/dashboard/api/experiments";
  // Drift shows this many features, the most drifted first; a search reaches the others.
  const DRIFT_TOP = 10;

  const state = { paused: false, inflight: null, timer: null, charts: {}, colors: {}, drift: null };

  // -- deep link: /dashboard?experiment=NAME becomes the hash route #/experiments/NAME ----------
  (function takeExperiment() {
    const params = new URLSearchParams(window.location.search);
    const name = params.get("experiment");
    if (name === null) return;
    params.delete("experiment");
    const query = params.toString();
    const hash = name && !window.location.hash.replace(/^#\/?/, "") ? "#/experiments/" + encodeURIComponent(name) : window.location.hash;
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : "") + hash);
  })();

  // -- token: ?token= is kept in localStorage and removed from the address bar ------------
  (function takeToken() {
    const params = new URLSearchParams(window.location.search);
    const token = params.get("token");
    if (token === null) return;
    try {
      if (token) window.localStorage.setItem(TOKEN_KEY, token);
      else window.localStorage.removeItem(TOKEN_KEY);
    } catch (e) { state.token = token; }
    params.delete("token");
    const query = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : "") + window.location.hash);
  })();

  function token() {
    if (state.token) return state.token;
    try { return window.localStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, signal) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    const response = await fetch(path, { headers: headers, cache: "no-store", signal: signal });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : "The server answered " + response.status + ".";
      throw new ApiError(response.status, message);
    }
    return body;
  }

  // -- small DOM and formatting helpers ----------------------------------------------------
  function $(selector, root) { return (root || document).querySelector(selector); }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children || []) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function isNum(x) { return typeof x === "number" && isFinite(x); }
  function num(x, digits) { return isNum(x) ? x.toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 0 : digits }) : "–"; }
  function fixed(x, digits) { return isNum(x) ? x.toFixed(digits) : "–"; }
  function sig(x, digits) { return isNum(x) ? Number(x.toPrecision(digits || 3)).toString() : "–"; }
  function pct(x, digits) { return isNum(x) ? (100 * x).toFixed(digits === undefined ? 1 : digits) + "%" : "–"; }
  function pval(p) { return isNum(p) ? (p < 0.001 ? "<0.001" : p.toFixed(3)) : "–"; }
  function interval(lo, hi, digits) { return isNum(lo) && isNum(hi) ? "[" + fixed(lo, digits) + ", " + fixed(hi, digits) + "]" : ""; }
  function seconds(iso) { return Date.parse(iso) / 1000; }

  /* One time format everywhere: ISO date and 24-hour time in UTC, "2026-12-02 14:05 UTC";
     seconds (and tenths) are added only where the span shown needs them. */
  function pad(n) { return String(n).padStart(2, "0"); }
  function utcDate(d) { return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()); }
  function utcClock(d, step) {
    let text = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    if (step < 60) text += ":" + pad(d.getUTCSeconds());
    if (step < 1) text += "." + Math.floor(d.getUTCMilliseconds() / 100);
    return text;
  }
  function utcText(secs, step) {
    const d = new Date(secs * 1000);
    return utcDate(d) + " " + utcClock(d, step === undefined ? 60 : step) + " UTC";
  }
  /* Time-axis ticks in the same format: the clock, with the date under the first tick and
     wherever the day changes. */
  function timeTicks(u, splits, axisIdx, space, incr) {
    let day = null;
    return splits.map(function (s) {
      const d = new Date(s * 1000);
      const date = utcDate(d);
      const label = utcClock(d, incr) + (date !== day ? "\n" + date : "");
      day = date;
      return label;
    });
  }
  function badge(status) { return el("span", { class: "badge status-" + status, text: status }); }

  function colorOf(name) {
    if (!(name in state.colors)) state.colors[name] = PALETTE[Object.keys(state.colors).length % PALETTE.length];
    return state.colors[name];
  }

  function showBanner(message) {
    const banner = $("#banner");
    banner.textContent = message;
    banner.hidden = !message;
  }

  function replaceRows(tbody, rows) { tbody.replaceChildren(...rows); }

  // -- charts ---------------------------------------------------------------------------------
  const utc = function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); };

  function chartWidth(container) { return Math.max(240, Math.floor(container.clientWidth || container.parentNode.clientWidth || 480)); }

  function legend(panel, items) {
    $(".legend", panel).replaceChildren(...items.map(function (item) {
      return el("span", { class: "legend-item" + (item.dash ? " dashed" : "") }, [
        el("span", { class: "swatch", style: "border-color:" + item.color }),
        item.label,
      ]);
    }));
  }

  function countPoints(data) {
    let points = 0;
    for (let i = 1; i < data.length; i++) for (const v of data[i]) if (v !== null && v !== undefined) points++;
    return points;
  }

  /* Draw ``data`` in the panel's chart; reuse the chart while its series stay the same. */
  function draw(panelId, key, makeOpts, data) {
    const panel = document.getElementById(panelId);
    const container = $(".chart", panel);
    container.dataset.points = String(countPoints(data));
    const existing = state.charts[panelId];
    if (existing && existing.key === key) {
      existing.chart.setData(data);
      return;
    }
    if (existing) existing.chart.destroy();
    container.replaceChildren();
    const opts = makeOpts();
    opts.width = chartWidth(container);
    opts.height = opts.height || 220;
    opts.legend = { show: false };
    // Room on the right for the last tick's label, which uPlot centres on its tick.
    opts.padding = [12, 36, 0, 0];
    const chart = new uPlot(opts, data, container);
    state.charts[panelId] = { key: key, chart: chart };
  }

  function timeAxes(yLabel, yValues) {
    return [
      { stroke: "#475569", grid: { stroke: "#e2e8f0" }, space: 80, size: 44, values: timeTicks, label: "UTC", labelSize: 14, labelFont: "11px system-ui, sans-serif" },
      { label: yLabel, stroke: "#475569", grid: { stroke: "#e2e8f0" }, size: 60, values: yValues },
    ];
  }

  const stepped = function () { return uPlot.paths.stepped({ align: 1 }); };

  function drawAllocation(history, report) {
    const names = history.variants.length ? history.variants : Object.keys(history.steps.length ? history.steps[history.steps.length - 1].weights : {});
    const panel = document.getElementById("panel-allocation");
    legend(panel, names.map(function (n) { return { label: n, color: colorOf(n) }; }));
    const xs = history.steps.map(function (s) { return seconds(s.created_at); });
    // The last version holds on to the last request (or to now, before any): the axis then
    // fits the experiment's data instead of stretching to the moment the page is looked at.
    const end = Math.max(seconds(history.last_request || history.now), xs.length ? xs[xs.length - 1] : 0);
    const data = [xs.concat([end])];
    // P(best) shares the allocation's axis (its first value comes with the second version),
    // so the two charts side by side line up.
    state.allocationSpan = xs.length ? [xs[0], end] : null;
    const xScale = { time: true, range: function (u, lo, hi) { return state.allocationSpan || [lo, hi]; } };
    for (const n of names) {
      const ys = history.steps.map(function (s) { return n in s.weights ? s.weights[n] : 0; });
      data.push(ys.concat([ys.length ? ys[ys.length - 1] : null]));
    }
    draw("panel-allocation", "alloc:" + names.join("|"), function () {
      return {
        tzDate: utc,
        scales: { x: xScale, y: { range: [0, 1] } },
        axes: timeAxes("weight", function (u, vals) { return vals.map(function (v) { return pct(v, 0); }); }),
        series: [{}].concat(names.map(function (n) {
          return { label: n, stroke: colorOf(n), width: 2, paths: stepped(), points: { show: false } };
        })),
      };
    }, data);

    // P(best): the value logged with each reallocation, then the report's current one.
    const pbestPanel = document.getElementById("panel-pbest");
    legend(pbestPanel, names.map(function (n) { return { label: n, color: colorOf(n) }; }));
    const logged = history.steps.filter(function (s) { return s.prob_best; });
    const px = logged.map(function (s) { return seconds(s.created_at); });
    const current = {};
    for (const v of report.variants) if (v.role === "arm" && isNum(v.prob_best)) current[v.name] = v.prob_best;
    const hasNow = Object.keys(current).length > 0;
    if (hasNow) px.push(Math.max(end, px.length ? px[px.length - 1] : 0));
    const pdata = [px];
    for (const n of names) {
      const ys = logged.map(function (s) { return n in s.prob_best ? s.prob_best[n] : null; });
      if (hasNow) ys.push(n in current ? current[n] : null);
      pdata.push(ys);
    }
    draw("panel-pbest", "pbest:" + names.join("|"), function () {
      return {
        tzDate: utc,
        scales: { x: xScale, y: { range: [0, 1] } },
        axes: timeAxes("P(best)", function (u, vals) { return vals.map(function (v) { return fixed(v, 2); }); }),
        series: [{}].concat(names.map(function (n) {
          return { label: n, stroke: colorOf(n), width: 2, paths: stepped(), points: { show: true, size: 6, fill: colorOf(n) } };
        })),
      };
    }, pdata);
  }

  function duration(s) {
    return s >= 3600 && s % 3600 === 0 ? s / 3600 + " h" : s >= 60 && s % 60 === 0 ? s / 60 + " min" : sig(s, 3) + " s";
  }

  function describeBuckets(series) {
    const width = duration(series.bucket_seconds);
    const start = seconds(series.start);
    const span = seconds(series.end) - start;
    const from = " from " + utcText(start, series.bucket_seconds) + ",";
    return span < series.hours * 3600
      ? "The whole experiment (younger than the " + series.hours + " h window)" + from + " in " + series.times.length + " buckets of " + width + "."
      : "The last " + series.hours + " h of the experiment's data" + from + " in " + series.times.length + " buckets of " + width + ".";
  }

  function drawSeries(series) {
    $("#series-note").textContent = describeBuckets(series);
    const xs = series.times.map(seconds);
    const variants = series.variants;
    const key = variants.map(function (v) { return v.role + ":" + v.name; }).join("|");
    const items = variants.map(function (v) { return { label: v.name + (v.role === "shadow" ? " (shadow)" : ""), color: colorOf(v.name), dash: v.role === "shadow" }; });
    const dash = function (v) { return v.role === "shadow" ? [6, 4] : undefined; };

    legend(document.getElementById("panel-requests"), items);
    draw("panel-requests", "req:" + key, function () {
      return {
        tzDate: utc,
        scales: { x: { time: true }, y: { range: function (u, lo, hi) { return [0, Math.max(1, hi * 1.1)]; } } },
        axes: timeAxes("requests"),
        series: [{}].concat(variants.map(function (v) { return { label: v.name, stroke: colorOf(v.name), width: 2, dash: dash(v), points: { show: false } }; })),
      };
    }, [xs].concat(variants.map(function (v) { return v.requests; })));

    const arms = variants.filter(function (v) { return v.role === "arm"; });
    legend(document.getElementById("panel-reward"), arms.map(function (v) { return { label: v.name, color: colorOf(v.name) }; }));
    const rewardData = [xs];
    const rewardSeries = [{}];
    const bands = [];
    // An empty bucket has no mean, latency or error rate: the lines join across it (the
    // requests chart shows the empty buckets as zeros) rather than breaking into dots.
    for (const v of arms) {
      const c = colorOf(v.name);
      const base = rewardSeries.length;
      rewardSeries.push({ label: v.name, stroke: c, width: 2, spanGaps: true, points: { show: true, size: 4, fill: c } });
      rewardSeries.push({ label: v.name + " high", stroke: c + "00", width: 0, spanGaps: true, points: { show: false } });
      rewardSeries.push({ label: v.name + " low", stroke: c + "00", width: 0, spanGaps: true, points: { show: false } });
      rewardData.push(v.reward_mean, v.ci_high, v.ci_low);
      bands.push({ series: [base + 1, base + 2], fill: c + "26" });
    }
    draw("panel-reward", "reward:" + key, function () {
      // Before any feedback every value is null: keep the axis (0 to 1) rather than none.
      const y = { range: function (u, lo, hi) { return lo === null || hi === null ? [0, 1] : uPlot.rangeNum(lo, hi, 0.1, true); } };
      return { tzDate: utc, scales: { x: { time: true }, y: y }, axes: timeAxes("reward"), series: rewardSeries, bands: bands };
    }, rewardData);

    const latencySeries = [{}];
    const latencyData = [xs];
    for (const v of variants) {
      latencySeries.push({ label: v.name + " p50", stroke: colorOf(v.name), width: 2, dash: dash(v), spanGaps: true, points: { size: 4, fill: colorOf(v.name) } });
      latencySeries.push({ label: v.name + " p99", stroke: colorOf(v.name), width: 1.5, dash: [4, 4], spanGaps: true, points: { size: 3 } });
      latencyData.push(v.latency_p50_ms, v.latency_p99_ms);
    }
    legend(document.getElementById("panel-latency"), items);
    draw("panel-latency", "lat:" + key, function () {
      return { tzDate: utc, scales: { x: { time: true } }, axes: timeAxes("ms"), series: latencySeries };
    }, latencyData);

    legend(document.getElementById("panel-errors"), items);
    draw("panel-errors", "err:" + key, function () {
      return {
        tzDate: utc,
        scales: { x: { time: true }, y: { range: function (u, lo, hi) { return [0, Math.max(0.01, hi * 1.2)]; } } },
        axes: timeAxes("error rate", function (u, vals) { return vals.map(function (v) { return pct(v, 1); }); }),
        series: [{}].concat(variants.map(function (v) { return { label: v.name, stroke: colorOf(v.name), width: 2, dash: dash(v), spanGaps: true, points: { size: 4, fill: colorOf(v.name) } }; })),
      };
    }, [xs].concat(variants.map(function (v) { return v.error_rate; })));
  }

  function plural(n, word) { return num(n) + " " + word + (n === 1 ? "" : "s"); }

  /* Features by PSI, the most drifted first; those without a PSI (too few rows) last. */
  function byPsi(a, b) {
    const pa = isNum(a.psi) ? a.psi : -1, pb = isNum(b.psi) ? b.psi : -1;
    return pb - pa || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  }

  function psiBar(f, scale, threshold) {
    const bar = el("div", { class: "psi-bar", title: "PSI " + fixed(f.psi, 3) + " (flagged above " + threshold + ")" }, [
      isNum(f.psi) ? el("span", { class: "fill" + (f.drifted ? " over" : ""), style: "width:" + Math.min(100, 100 * f.psi / scale).toFixed(1) + "%" }) : null,
      el("span", { class: "threshold", style: "left:" + (100 * threshold / scale).toFixed(1) + "%" }),
    ]);
    return bar;
  }

  function drawDrift(drift) {
    state.drift = drift;
    const features = drift.features.slice().sort(byPsi);
    const query = $("#drift-filter").value.trim().toLowerCase();
    const matches = query ? features.filter(function (f) { return f.name.toLowerCase().includes(query); }) : features;
    const shown = query ? matches : matches.slice(0, DRIFT_TOP);
    $("#drift-filter").hidden = features.length <= DRIFT_TOP;
    $("#drift-shown").textContent = query
      ? plural(matches.length, "feature") + " of " + features.length + " match “" + query + "”."
      : features.length > DRIFT_TOP ? "The " + DRIFT_TOP + " most drifted of " + features.length + " features; search to see any other." : "";
    const psis = features.map(function (f) { return f.psi; }).filter(isNum);
    const scale = Math.max(drift.threshold * 1.5, psis.length ? Math.max.apply(null, psis) * 1.05 : 0);
    const enough = "needs " + drift.min_rows + " rows in each window";

    $("#drift thead").replaceChildren(el("tr", {}, [
      el("th", { text: "Feature" }), el("th", { text: "PSI (dashed: " + drift.threshold + ")" }), el("th", { class: "num", text: "PSI" }),
      el("th", { text: "Status" }), el("th", { class: "num", text: "Mean (first)" }), el("th", { class: "num", text: "Mean (last)" }),
      el("th", { class: "num", text: "Rows (first / last)" }),
    ]));
    replaceRows($("#drift tbody"), shown.map(function (f) {
      return el("tr", { class: f.drifted ? "flagged" : null, "data-feature": f.name }, [
        el("td", { class: "name", text: f.name }),
        el("td", { class: "bar-cell" }, [psiBar(f, scale, drift.threshold)]),
        el("td", { class: "num", text: fixed(f.psi, 3) }),
        el("td", {}, [f.psi === null ? el("span", { class: "muted", title: enough, text: "not enough data" }) : f.drifted ? el("span", { class: "badge bad", text: "drifted" }) : el("span", { class: "badge good", text: "stable" })]),
        el("td", { class: "num", text: fixed(f.reference_mean, 3) }),
        el("td", { class: "num", text: fixed(f.current_mean, 3) }),
        el("td", { class: "num", text: num(f.reference_rows) + " / " + num(f.current_rows) }),
      ]);
    }));

    const ref = drift.reference, cur = drift.current;
    let windows = "";
    if (ref && cur) {
      const step = Math.max(0.1, seconds(cur.end) - seconds(ref.start)) / 20;
      const span = function (w) { return utcText(seconds(w.start), step) + " → " + utcText(seconds(w.end), step) + ", " + plural(w.rows, "row"); };
      windows = "First window: " + span(ref) + ". Last window: " + span(cur) + ". A feature " + enough + " to get a PSI.";
    }
    $("#drift-hint").textContent = ref && cur
      ? "Population stability index of the last window against the first; above the dashed line (" + drift.threshold + ") a feature is flagged."
      : "No predictions yet, so no drift to measure.";
    $("#drift-windows").textContent = windows;

    const card = $("#card-drift");
    const measured = features.filter(function (f) { return isNum(f.psi); }).length;
    const value = $(".value", card);
    if (!features.length) {
      value.textContent = "–";
      value.className = "value";
      $(".note", card).textContent = ref ? "no features" : "no predictions yet";
    } else if (!measured) {
      value.textContent = "not enough data";
      value.className = "value muted";
      $(".note", card).textContent = enough + (ref && cur ? " (has " + num(ref.rows) + " / " + num(cur.rows) + ")" : "");
    } else {
      value.textContent = drift.drifted.length ? drift.drifted.length + " drifted" : "stable";
      value.className = "value " + (drift.drifted.length ? "bad" : "good");
      const listed = drift.drifted.slice(0, 5).join(", ") + (drift.drifted.length > 5 ? ", …" : "");
      $(".note", card).textContent = drift.drifted.length ? listed : plural(measured, "feature") + ", PSI ≤ " + drift.threshold;
    }
  }

  // -- tables and cards ---------------------------------------------------------------------
  function renderReport(report) {
    $("#exp-name").textContent = report.experiment;
    $("#exp-status").replaceWith(Object.assign(badge(report.status), { id: "exp-status" }));
    $("#exp-reward").textContent = "reward: " + report.reward;
    const verdict = $("#verdict");
    verdict.textContent = report.verdict;
    verdict.className = "verdict" + (report.srm_mismatch ? " bad" : report.winner ? " good" : "");

    const srm = $("#card-srm");
    $(".value", srm).textContent = report.srm_p_value === null ? "–" : report.srm_mismatch ? "mismatch" : "ok";
    $(".value", srm).className = "value " + (report.srm_mismatch ? "bad" : report.srm_p_value === null ? "" : "good");
    $(".note", srm).textContent = report.srm_p_value === null ? "needs traffic on two arms" : "p = " + sig(report.srm_p_value, 3) + " (flag below 0.001)";
    const alloc = $("#card-allocation");
    $(".value", alloc).textContent = report.allocation_version === null ? "–" : "v" + report.allocation_version;
    $(".note", alloc).textContent = report.variants.filter(function (v) { return v.role === "arm" && isNum(v.weight); }).map(function (v) { return v.name + " " + pct(v.weight, 0); }).join(" · ");
    const arms = report.variants.filter(function (v) { return v.role === "arm"; });
    $(".value", $("#card-requests")).textContent = num(arms.reduce(function (a, v) { return a + v.requests; }, 0));
    $(".note", $("#card-requests")).textContent = num(arms.reduce(function (a, v) { return a + v.rewarded; }, 0)) + " with feedback";

    const control = arms.length ? arms[0].name : "the control";
    $("#tests thead").replaceChildren(el("tr", {}, [
      ["Variant"], ["Weight", "num"], ["Requests", "num"], ["Rewarded", "num"], ["Reward mean", "num"], ["P(best)", "num"],
      ["Expected loss", "num"], ["Effect vs control", "num"], ["p-value [Holm]", "num"], ["Decision", "decision"], ["p50 / p99 ms", "num"], ["Errors", "num"],
    ].map(function (h) { return el("th", { class: h[1] || null, text: h[0] }); })));
    replaceRows($("#tests tbody"), report.variants.map(function (v) {
      const t = v.test;
      return el("tr", { class: report.winner === v.name ? "winner" : null }, [
        el("td", { class: "name" }, [
          el("span", { class: "swatch", style: "border-color:" + colorOf(v.name) }), v.name,
          v.role === "shadow" ? el("span", { class: "badge tag", text: "shadow" }) : null,
          v.status !== "active" ? Object.assign(badge(v.status), { className: "badge tag status-" + v.status }) : null,
        ]),
        el("td", { class: "num", text: v.weight === null ? "–" : pct(v.weight, 1) }),
        el("td", { class: "num", text: num(v.requests) }),
        el("td", { class: "num", text: num(v.rewarded) }),
        el("td", { class: "num" }, [fixed(v.reward_mean, 3), el("span", { class: "sub", text: interval(v.ci_low, v.ci_high, 3) })]),
        el("td", { class: "num", text: fixed(v.prob_best, 3) }),
        el("td", { class: "num", text: sig(v.expected_loss, 2) }),
        el("td", { class: "num" }, t ? [(t.diff >= 0 ? "+" : "") + fixed(t.diff, 3), el("span", { class: "sub", text: interval(t.ci_low, t.ci_high, 3) })] : ["–"]),
        el("td", { class: "num", text: t ? pval(t.p_value) + (isNum(t.adjusted_p_value) ? " [" + pval(t.adjusted_p_value) + "]" : "") : "–" }),
        el("td", { class: "decision" }, decision(v, control)),
        el("td", { class: "num", text: fixed(v.latency_p50_ms, 1) + " / " + fixed(v.latency_p99_ms, 1) }),
        el("td", { class: "num", text: pct(v.error_rate, 2) }),
      ]);
    }));
  }

  /* The sequential test's decision in words: "reject" means the test rejected "no
     difference from the control", so the sign of the effect says which way. */
  function decision(v, control) {
    const t = v.test;
    if (!t) return [el("span", { class: "muted", text: v.role === "arm" ? "control" : "shadow (not served)" })];
    const sequential = "mSPRT p " + (t.sequential_p_value < 0.001 ? "< 0.001" : "= " + pval(t.sequential_p_value));
    if (t.sequential_decision !== "reject") {
      return [
        el("span", { class: "decision-text open", title: "The sequential test cannot yet tell " + v.name + " from " + control + " at the 5% level.", text: "no clear difference yet" }),
        el("span", { class: "sub", text: sequential }),
      ];
    }
    const better = t.diff >= 0;
    return [
      el("span", {
        class: "decision-text " + (better ? "win" : "loss"),
        title: "The sequential test (mSPRT) rejects “" + v.name + " performs like " + control + "” at the 5% level; it stays valid however often it is read.",
        text: (better ? "beats " : "worse than ") + control + " (significant)",
      }),
      el("span", { class: "sub", text: sequential }),
    ];
  }

  function renderList(experiments) {
    $("#no-experiments").hidden = experiments.length > 0;
    replaceRows($("#experiments tbody"), experiments.map(function (e) {
      const href = "#/experiments/" + encodeURIComponent(e.name);
      return el("tr", { class: "link-row", "data-href": href }, [
        el("td", {}, [el("a", { href: href, text: e.name })]),
        el("td", {}, [badge(e.status)]),
        el("td", { text: e.reward }),
        el("td", { text: e.policy }),
        el("td", { text: e.variants.join(", ") }),
        el("td", { class: "num", text: e.allocation_version === null ? "–" : "v" + e.allocation_version }),
        el("td", { class: "num", text: num(e.requests) }),
        el("td", { class: "verdict-cell" + (e.srm_mismatch ? " bad" : e.winner ? " good" : ""), text: e.verdict }),
      ]);
    }));
  }

  // -- views and the refresh loop -------------------------------------------------------------
  /* #/experiments/NAME (or the short #/NAME) shows one experiment; it survives a reload. */
  function route() {
    const match = window.location.hash.match(/^#\/(?:experiments\/)?(.+)$/);
    return match ? decodeURIComponent(match[1]) : null;
  }

  function hours() { return Number($("#hours").value) || 24; }

  async function refreshList(signal) {
    const experiments = await api(API, signal);
    if (signal.aborted) return;
    renderList(experiments);
  }

  async function refreshExperiment(name, signal) {
    if ($("#exp-name").textContent !== name) $("#exp-name").textContent = name;
    const base = API + "/" + encodeURIComponent(name);
    const h = hours();
    const buckets = h <= 24 ? 48 : h <= 168 ? 84 : 90;
    const [report, history, series, drift] = await Promise.allSettled([
      api(base + "/report", signal),
      api(base + "/allocations", signal),
      api(base + "/timeseries?hours=" + h + "&buckets=" + buckets, signal),
      api(base + "/drift?hours=" + h, signal),
    ]);
    if (signal.aborted) return;
    const failed = [report, history, series, drift].filter(function (r) { return r.status === "rejected"; });
    if (report.status === "fulfilled") {
      for (const v of report.value.variants) colorOf(v.name);
      renderReport(report.value);
      if (history.status === "fulfilled") drawAllocation(history.value, report.value);
    }
    if (series.status === "fulfilled") drawSeries(series.value);
    if (drift.status === "fulfilled") drawDrift(drift.value);
    if (failed.length) throw failed[0].reason;
  }

  /* Fetch and render the current view. A periodic tick leaves a refresh in flight alone
     (a slow server gets no pile-up); a user's action (``supersede``) aborts it, so the view
     just asked for renders at once and the abandoned one never paints over it. */
  async function refresh(supersede) {
    if (state.inflight) {
      if (!supersede) return;
      state.inflight.abort();
    }
    const controller = new AbortController();
    const signal = controller.signal;
    state.inflight = controller;
    const name = route();
    $("#list-view").hidden = name !== null;
    $("#experiment-view").hidden = name === null;
    document.title = (name === null ? "experiments" : name) + " · banditlake";
    try {
      if (name === null) await refreshList(signal);
      else await refreshExperiment(name, signal);
      if (signal.aborted) return;
      showBanner("");
      $("#updated").textContent = "updated " + utcText(Date.now() / 1000, 1) + (state.paused ? " · paused" : "");
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        showBanner(error.message + " Open this page as /dashboard?token=<admin token> (it is then kept in this browser).");
      } else {
        showBanner(error.message || String(error));
      }
      $("#updated").textContent = "update failed " + utcText(Date.now() / 1000, 1);
    } finally {
      if (state.inflight === controller) state.inflight = null;
    }
  }

  function schedule() {
    window.clearInterval(state.timer);
    state.timer = state.paused ? null : window.setInterval(function () { if (!document.hidden) refresh(); }, REFRESH_MS);
  }

  function resetCharts() {
    for (const entry of Object.values(state.charts)) entry.chart.destroy();
    state.charts = {};
  }

  window.addEventListener("hashchange", function () {
    resetCharts();
    state.drift = null;
    $("#drift-filter").value = "";
    refresh(true);
  });
  $("#hours").addEventListener("change", function () { refresh(true); });
  $("#drift-filter").addEventListener("input", function () { if (state.drift) drawDrift(state.drift); });
  $("#pause").addEventListener("click", function () {
    state.paused = !state.paused;
    $("#pause").textContent = state.paused ? "Resume" : "Pause";
    schedule();
    if (!state.paused) refresh(true);
  });
  $("#experiments tbody").addEventListener("click", function (event) {
    const row = event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a")) window.location.hash = row.dataset.href;
  });
  let resizeTimer = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(function () {
      for (const [id, entry] of Object.entries(state.charts)) {
        const container = $(".chart", document.getElementById(id));
        entry.chart.setSize({ width: chartWidth(container), height: entry.chart.height });
      }
    }, 150);
  });

  window.banditlakeDashboard = { refresh: refresh, state: state };
  refresh();
  schedule();
})();
