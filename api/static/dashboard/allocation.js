/* Allocation over time: each allocation version's weights as a step, the last one held to
   the experiment's last request. */

import {
  colorOf,
  draw,
  legend,
  line,
  noPoints,
  percentTicks,
  stepped,
  timeChart,
  unitScale,
} from "./charts.js";
import { seconds } from "./format.js";

// The x range of the allocation chart, which P(best) shares so that the two charts side by
// side line up; null before the first version.
let span = null;

/* The arms charted: the experiment's, or before it has any, those of the last version. */
export const armNames = (history) => {
  if (history.variants.length) return history.variants;
  const last = history.steps[history.steps.length - 1];
  return Object.keys(last ? last.weights : {});
};

/* An x scale over the allocation chart's range (the data's own before any version). */
export const allocationScale = () => ({ time: true, range: (u, lo, hi) => span || [lo, hi] });

/* Draw the chart; returns where it ends. */
export const drawAllocation = (history) => {
  const names = armNames(history);
  legend("panel-allocation", names.map((n) => ({ label: n, color: colorOf(n) })));
  const xs = history.steps.map((s) => seconds(s.created_at));
  // The last version holds on to the last request (or to now, before any): the axis then
  // fits the experiment's data instead of stretching to the moment the page is looked at.
  const lastX = xs.length ? xs[xs.length - 1] : 0;
  const end = Math.max(seconds(history.last_request || history.now), lastX);
  span = xs.length ? [xs[0], end] : null;
  const data = [[...xs, end]];
  for (const n of names) {
    const ys = history.steps.map((s) => (n in s.weights ? s.weights[n] : 0));
    data.push([...ys, ys.length ? ys[ys.length - 1] : null]);
  }
  const makeOpts = () =>
    timeChart({
      x: allocationScale(),
      y: unitScale(),
      yLabel: "weight",
      yValues: percentTicks(0),
      series: names.map((n) => line(n, colorOf(n), { paths: stepped(), points: noPoints() })),
    });
  draw("panel-allocation", `alloc:${names.join("|")}`, makeOpts, data);
  return end;
};
