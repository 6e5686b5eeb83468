/* uPlot, shared by every chart: the palette, the UTC time axis, the option blocks each
   chart is built from, and the charts drawn so far (reused while their series stay the
   same, so a refresh only swaps the data). */

import { $, byId, el } from "./dom.js";
import { fixed, pct, utcClock, utcDate } from "./format.js";

const { uPlot } = window;

const PALETTE = [
  "#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777",
];
const AXIS = "#475569";
const GRID = { stroke: "#e2e8f0" };
const HEIGHT = 220;

// A variant keeps its colour on every chart and in the tables: the first name seen gets the
// first colour.
const colors = {};

export const colorOf = (name) => {
  if (!(name in colors)) colors[name] = PALETTE[Object.keys(colors).length % PALETTE.length];
  return colors[name];
};

/* Panel id -> { key, chart }: the charts on the page. */
export const charts = {};

// -- option blocks ----------------------------------------------------------------------
const utc = (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");

/* Time-axis ticks in the page's one time format: the clock, with the date under the first
   tick and wherever the day changes. */
const timeTicks = (u, splits, axisIdx, space, incr) => {
  let day = null;
  return splits.map((s) => {
    const d = new Date(s * 1000);
    const date = utcDate(d);
    const label = utcClock(d, incr) + (date !== day ? `\n${date}` : "");
    day = date;
    return label;
  });
};

const timeAxes = (yLabel, yValues) => [
  {
    stroke: AXIS,
    grid: GRID,
    space: 80,
    size: 44,
    values: timeTicks,
    label: "UTC",
    labelSize: 14,
    labelFont: "11px system-ui, sans-serif",
  },
  { label: yLabel, stroke: AXIS, grid: GRID, size: 60, values: yValues },
];

export const percentTicks = (digits) => (u, values) => values.map((v) => pct(v, digits));

export const fixedTicks = (digits) => (u, values) => values.map((v) => fixed(v, digits));

/* A y scale over [0, 1]: weights and probabilities. */
export const unitScale = () => ({ range: [0, 1] });

/* A y scale from 0 to the highest value with ``headroom`` above it, ``floor`` at least. */
export const zeroBasedScale = (floor, headroom) => ({
  range: (u, lo, hi) => [0, Math.max(floor, hi * headroom)],
});

/* A y scale fitted to the values with 10% padding; over [0, 1] while there are none (every
   value null), so the axis stays rather than disappearing. */
export const paddedScale = () => ({
  range: (u, lo, hi) => (lo === null || hi === null ? [0, 1] : uPlot.rangeNum(lo, hi, 0.1, true)),
});

/* The options every chart starts from: UTC time on x (``x``, or fitted to the data), a
   labelled y axis, an unlabelled x series, then ``series``. */
export const timeChart = ({ x = { time: true }, y, yLabel, yValues, series, bands }) => {
  const opts = {
    tzDate: utc,
    scales: y ? { x, y } : { x },
    axes: timeAxes(yLabel, yValues),
    series: [{}, ...series],
  };
  if (bands) opts.bands = bands;
  return opts;
};

/* A variant's line: 2 px in its colour; ``extra`` adds or overrides options. */
export const line = (label, color, extra = {}) => ({ label, stroke: color, width: 2, ...extra });

export const stepped = () => uPlot.paths.stepped({ align: 1 });

export const noPoints = () => ({ show: false });

export const dots = (color, size) => ({ size, fill: color });

// An empty bucket has no mean, latency or error rate: the lines join across it (the
// requests chart shows the empty buckets as zeros) rather than breaking into dots.
export const joined = { spanGaps: true };

/* A shadow variant is drawn dashed. */
export const shadowDash = (variant) => (variant.role === "shadow" ? [6, 4] : undefined);


// -- drawing ----------------------------------------------------------------------------
/* The legend above a chart: ``{ label, color, dash }`` per line. */
export const legend = (panelId, items) => {
  $(".legend", byId(panelId)).replaceChildren(
    ...items.map((item) =>
      el("span", { class: `legend-item${item.dash ? " dashed" : ""}` }, [
        el("span", { class: "swatch", style: `border-color:${item.color}` }),
        item.label,
      ]),
    ),
  );
};

const chartWidth = (container) =>
  Math.max(240, Math.floor(container.clientWidth || container.parentNode.clientWidth || 480));

const countPoints = (data) => {
  let points = 0;
  for (const values of data.slice(1)) {
    for (const v of values) if (v !== null && v !== undefined) points++;
  }
  return points;
};

/* Draw ``data`` in the panel's chart; reuse the chart while its series (``key``) stay the
   same, else build it from ``makeOpts()``. */
export const draw = (panelId, key, makeOpts, data) => {
  const container = $(".chart", byId(panelId));
  container.dataset.points = String(countPoints(data));
  const existing = charts[panelId];
  if (existing && existing.key === key) {
    existing.chart.setData(data);
    return;
  }
  if (existing) existing.chart.destroy();
  container.replaceChildren();
  const opts = makeOpts();
  opts.width = chartWidth(container);
  opts.height = opts.height || HEIGHT;
  opts.legend = { show: false };
  // Room on the right for the last tick's label, which uPlot centres on its tick.
  opts.padding = [12, 36, 0, 0];
  charts[panelId] = { key, chart: new uPlot(opts, data, container) };
};

export const resetCharts = () => {
  for (const [id, entry] of Object.entries(charts)) {
    entry.chart.destroy();
    delete charts[id];
  }
};

export const fitCharts = () => {
  for (const [id, entry] of Object.entries(charts)) {
    const container = $(".chart", byId(id));
    entry.chart.setSize({ width: chartWidth(container), height: entry.chart.height });
  }
};
