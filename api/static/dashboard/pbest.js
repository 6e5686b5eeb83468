/* P(best): the value logged with each reallocation, then the report's current one at the
   allocation chart's end, on the allocation chart's time axis. */

import { allocationScale, armNames } from "./allocation.js";
import {
  colorOf,
  dots,
  draw,
  fixedTicks,
  legend,
  line,
  stepped,
  timeChart,
  unitScale,
} from "./charts.js";
import { isNum, seconds } from "./format.js";

export const drawPbest = (history, report, end) => {
  const names = armNames(history);
  legend("panel-pbest", names.map((n) => ({ label: n, color: colorOf(n) })));
  const logged = history.steps.filter((s) => s.prob_best);
  const xs = logged.map((s) => seconds(s.created_at));
  const current = {};
  for (const v of report.variants) {
    if (v.role === "arm" && isNum(v.prob_best)) current[v.name] = v.prob_best;
  }
  const hasNow = Object.keys(current).length > 0;
  if (hasNow) xs.push(Math.max(end, xs.length ? xs[xs.length - 1] : 0));
  const data = [xs];
  for (const n of names) {
    const ys = logged.map((s) => (n in s.prob_best ? s.prob_best[n] : null));
    if (hasNow) ys.push(n in current ? current[n] : null);
    data.push(ys);
  }
  const makeOpts = () =>
    timeChart({
      x: allocationScale(),
      y: unitScale(),
      yLabel: "P(best)",
      yValues: fixedTicks(2),
      series: names.map((n) =>
        line(n, colorOf(n), { paths: stepped(), points: { show: true, ...dots(colorOf(n), 6) } }),
      ),
    });
  draw("panel-pbest", `pbest:${names.join("|")}`, makeOpts, data);
};
