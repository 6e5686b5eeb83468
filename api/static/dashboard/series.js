/* The time series panels: requests, reward rate, latency and error rate per variant and
   time bucket, as the server bucketed them, and the note above them saying which buckets. */

import {
  colorOf,
  dots,
  draw,
  joined,
  legend,
  line,
  noPoints,
  paddedScale,
  percentTicks,
  shadowDash,
  timeChart,
  zeroBasedScale,
} from "./charts.js";
import { $ } from "./dom.js";
import { duration, seconds, utcText } from "./format.js";

/* How many buckets to ask for over a window of ``hours``: the charts' resolution. */
export const bucketCount = (hours) => (hours <= 24 ? 48 : hours <= 168 ? 84 : 90);

/* Which buckets the charts show, in the server's words: it chose the window (the whole of a
   young experiment, or the last hours of data), the width and the count. */
const describeBuckets = (series) => {
  const scope = series.whole_experiment
    ? `The whole experiment (younger than the ${series.hours} h window)`
    : `The last ${series.hours} h of the experiment's data`;
  const from = utcText(seconds(series.start), series.bucket_seconds);
  const width = duration(series.bucket_seconds);
  return `${scope} from ${from}, in ${series.times.length} buckets of ${width}.`;
};

const drawRequests = (xs, variants, key) => {
  const makeOpts = () =>
    timeChart({
      y: zeroBasedScale(1, 1.1),
      yLabel: "requests",
      series: variants.map((v) =>
        line(v.name, colorOf(v.name), { dash: shadowDash(v), points: noPoints() }),
      ),
    });
  draw("panel-requests", `req:${key}`, makeOpts, [xs, ...variants.map((v) => v.requests)]);
};

/* Each arm's mean with its 95% interval as a shaded band between two invisible lines. */
const drawReward = (xs, arms, key) => {
  legend("panel-reward", arms.map((v) => ({ label: v.name, color: colorOf(v.name) })));
  const data = [xs];
  const series = [];
  const bands = [];
  for (const v of arms) {
    const color = colorOf(v.name);
    const bound = (label) =>
      ({ label, stroke: `${color}00`, width: 0, ...joined, points: noPoints() });
    // uPlot numbers the series from 1 (0 is x): this arm's mean is series.length + 1.
    const mean = series.length + 1;
    series.push(
      line(v.name, color, { ...joined, points: { show: true, ...dots(color, 4) } }),
      bound(`${v.name} high`),
      bound(`${v.name} low`),
    );
    data.push(v.reward_mean, v.ci_high, v.ci_low);
    bands.push({ series: [mean + 1, mean + 2], fill: `${color}26` });
  }
  const makeOpts = () => timeChart({ y: paddedScale(), yLabel: "reward", series, bands });
  draw("panel-reward", `reward:${key}`, makeOpts, data);
};

const drawLatency = (xs, variants, key) => {
  const data = [xs];
  const series = [];
  for (const v of variants) {
    const color = colorOf(v.name);
    series.push(
      line(`${v.name} p50`, color, { dash: shadowDash(v), ...joined, points: dots(color, 4) }),
      line(`${v.name} p99`, color, { width: 1.5, dash: [4, 4], ...joined, points: { size: 3 } }),
    );
    data.push(v.latency_p50_ms, v.latency_p99_ms);
  }
  draw("panel-latency", `lat:${key}`, () => timeChart({ yLabel: "ms", series }), data);
};

const drawErrors = (xs, variants, key) => {
  const makeOpts = () =>
    timeChart({
      y: zeroBasedScale(0.01, 1.2),
      yLabel: "error rate",
      yValues: percentTicks(1),
      series: variants.map((v) => {
        const color = colorOf(v.name);
        return line(v.name, color, { dash: shadowDash(v), ...joined, points: dots(color, 4) });
      }),
    });
  draw("panel-errors", `err:${key}`, makeOpts, [xs, ...variants.map((v) => v.error_rate)]);
};

export const drawSeries = (series) => {
  $("#series-note").textContent = describeBuckets(series);
  const xs = series.times.map(seconds);
  const { variants } = series;
  const key = variants.map((v) => `${v.role}:${v.name}`).join("|");
  const items = variants.map((v) => ({
    label: v.name + (v.role === "shadow" ? " (shadow)" : ""),
    color: colorOf(v.name),
    dash: v.role === "shadow",
  }));
  for (const id of ["panel-requests", "panel-latency", "panel-errors"]) legend(id, items);
  drawRequests(xs, variants, key);
  drawReward(xs, variants.filter((v) => v.role === "arm"), key);
  drawLatency(xs, variants, key);
  drawErrors(xs, variants, key);
};
