/* The test results table: per variant its traffic, reward, P(best), effect against the
   control with the p-values, and the sequential test's decision in words. */

import { colorOf } from "./charts.js";
import { $, badge, el } from "./dom.js";
import { fixed, interval, isNum, num, pct, pval, sig } from "./format.js";

const HEADERS = [
  ["Variant"],
  ["Weight", "num"],
  ["Requests", "num"],
  ["Rewarded", "num"],
  ["Reward mean", "num"],
  ["P(best)", "num"],
  ["Expected loss", "num"],
  ["Effect vs control", "num"],
  ["p-value [Holm]", "num"],
  ["Decision", "decision"],
  ["p50 / p99 ms", "num"],
  ["Errors", "num"],
];

/* A value with its interval under it. */
const withInterval = (value, lo, hi) => [
  value,
  el("span", { class: "sub", text: interval(lo, hi, 3) }),
];

/* The sequential test's decision in words: "reject" means the test rejected "no
   difference from the control", so the sign of the effect says which way. */
const decision = (v, control) => {
  const t = v.test;
  if (!t) {
    const text = v.role === "arm" ? "control" : "shadow (not served)";
    return [el("span", { class: "muted", text })];
  }
  const p = t.sequential_p_value < 0.001 ? "< 0.001" : `= ${pval(t.sequential_p_value)}`;
  const sequential = el("span", { class: "sub", text: `mSPRT p ${p}` });
  if (t.sequential_decision !== "reject") {
    const title = `The sequential test cannot yet tell ${v.name} from ${control} at the 5% level.`;
    return [
      el("span", { class: "decision-text open", title, text: "no clear difference yet" }),
      sequential,
    ];
  }
  const better = t.diff >= 0;
  return [
    el("span", {
      class: `decision-text ${better ? "win" : "loss"}`,
      title:
        `The sequential test (mSPRT) rejects “${v.name} performs like ${control}” at the 5% ` +
        "level; it stays valid however often it is read.",
      text: `${better ? "beats " : "worse than "}${control} (significant)`,
    }),
    sequential,
  ];
};

/* Which estimator the interval and the test come from: on an experiment whose
   allocation moved, the adaptive ones (valid although the bandit chose the data). */
const estimatorNote = (v) =>
  v.interval_estimator === "adaptive_aipw"
    ? [
        el("span", {
          class: "sub",
          text: "adaptive AIPW",
          title:
            "The allocation changed while the data came in, so this interval and the " +
            "test use adaptively weighted AIPW, which stays valid on the bandit's own data.",
        }),
      ]
    : [];

const nameCell = (v) =>
  el("td", { class: "name" }, [
    el("span", { class: "swatch", style: `border-color:${colorOf(v.name)}` }),
    v.name,
    v.role === "shadow" ? el("span", { class: "badge tag", text: "shadow" }) : null,
    v.status !== "active"
      ? Object.assign(badge(v.status), { className: `badge tag status-${v.status}` })
      : null,
  ]);

const row = (v, report, control) => {
  const t = v.test;
  const effect = t
    ? withInterval((t.diff >= 0 ? "+" : "") + fixed(t.diff, 3), t.ci_low, t.ci_high)
    : ["–"];
  const adjusted = t && isNum(t.adjusted_p_value) ? ` [${pval(t.adjusted_p_value)}]` : "";
  return el("tr", { class: report.winner === v.name ? "winner" : null }, [
    nameCell(v),
    el("td", { class: "num", text: v.weight === null ? "–" : pct(v.weight, 1) }),
    el("td", { class: "num", text: num(v.requests) }),
    el("td", { class: "num", text: num(v.rewarded) }),
    el("td", { class: "num" }, [
      ...withInterval(fixed(v.reward_mean, 3), v.ci_low, v.ci_high),
      ...estimatorNote(v),
    ]),
    el("td", { class: "num", text: fixed(v.prob_best, 3) }),
    el("td", { class: "num", text: sig(v.expected_loss, 2) }),
    el("td", { class: "num" }, effect),
    el("td", { class: "num", text: t ? pval(t.p_value) + adjusted : "–" }),
    el("td", { class: "decision" }, decision(v, control)),
    el("td", {
      class: "num",
      text: `${fixed(v.latency_p50_ms, 1)} / ${fixed(v.latency_p99_ms, 1)}`,
    }),
    el("td", { class: "num", text: pct(v.error_rate, 2) }),
  ]);
};

export const renderTests = (report) => {
  const arms = report.variants.filter((v) => v.role === "arm");
  const control = arms.length ? arms[0].name : "the control";
  $("#tests thead").replaceChildren(
    el("tr", {}, HEADERS.map(([text, cls]) => el("th", { class: cls, text }))),
  );
  $("#tests tbody").replaceChildren(...report.variants.map((v) => row(v, report, control)));
};
