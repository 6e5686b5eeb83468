/* Prediction drift (per variant, the PSI of its predictions' last window against the
   first) and data quality (per feature, missing and out-of-range values, NaN logged and
   refused): two tables under feature drift, over the same windows. */

import { $, el } from "./dom.js";
import { fixed, isNum, num, pct, plural } from "./format.js";

// The quality table shows this many features, the worst first.
const TOP = 10;
// A feature's row is highlighted from this share of missing (more than in the first
// window) or out-of-range values on: a few values past the first window's extremes are
// expected of any continuous feature, so the figures are shown but not marked below it.
const NOTABLE = 0.05;

const psiBar = (v, scale, threshold) => {
  const at = (value) => `${Math.min(100, (100 * value) / scale).toFixed(1)}%`;
  const fill = isNum(v.psi)
    ? el("span", { class: `fill${v.drifted ? " over" : ""}`, style: `width:${at(v.psi)}` })
    : null;
  const mark = el("span", { class: "threshold", style: `left:${at(threshold)}` });
  const title = `PSI ${fixed(v.psi, 3)} (flagged above ${threshold})`;
  return el("div", { class: "psi-bar", title }, [fill, mark]);
};

const driftStatus = (v, enough) => {
  if (v.psi === null) return el("span", { class: "muted", title: enough, text: "not enough data" });
  return v.drifted
    ? el("span", { class: "badge bad", text: "drifted" })
    : el("span", { class: "badge good", text: "stable" });
};

export const drawPredictionDrift = (drift) => {
  const enough = `needs ${drift.min_rows} predictions in each window`;
  const psis = drift.variants.map((v) => v.psi).filter(isNum);
  const scale = Math.max(drift.threshold * 1.5, psis.length ? Math.max(...psis) * 1.05 : 0);
  const headers = [
    ["Variant"], [`PSI (dashed: ${drift.threshold})`], ["PSI", "num"], ["Status"],
    ["Mean (first)", "num"], ["Mean (last)", "num"], ["Predictions (first / last)", "num"],
    ["NaN (last)", "num"],
  ];
  $("#prediction-drift thead").replaceChildren(
    el("tr", {}, headers.map(([text, cls]) => el("th", { class: cls, text }))),
  );
  $("#prediction-drift tbody").replaceChildren(
    ...drift.variants.map((v) =>
      el("tr", { class: v.drifted ? "flagged" : null, "data-variant": v.name }, [
        el("td", { class: "name", text: v.role === "shadow" ? `${v.name} (shadow)` : v.name }),
        el("td", { class: "bar-cell" }, [psiBar(v, scale, drift.threshold)]),
        el("td", { class: "num", text: fixed(v.psi, 3) }),
        el("td", {}, [driftStatus(v, enough)]),
        el("td", { class: "num", text: fixed(v.reference_mean, 3) }),
        el("td", { class: "num", text: fixed(v.current_mean, 3) }),
        el("td", { class: "num", text: `${num(v.reference_rows)} / ${num(v.current_rows)}` }),
        el("td", { class: "num", text: num(v.current_nonfinite) }),
      ]),
    ),
  );
  let hint = "No predictions yet, so no drift to measure.";
  if (drift.reference && drift.current) {
    hint = "Population stability index of each variant's predictions in the last window " +
      "against the first (the feature-drift windows; online and stream requests, batch " +
      `scoring left out); above the dashed line (${drift.threshold}) a variant is flagged; ` +
      `a variant ${enough}.`;
  }
  $("#prediction-drift-hint").textContent = hint;
};

/* How bad a feature looks: its missing share and out-of-range share in the last window,
   and any NaN logged or refused. */
const badness = (f) =>
  (f.current_missing_share || 0) + (f.out_of_range_share || 0) +
  (f.current_nonfinite || 0) + f.rejected_nonfinite;

const range = (f) =>
  isNum(f.low) && isNum(f.high) ? `${fixed(f.low, 3)} … ${fixed(f.high, 3)}` : "–";

const outOfRange = (f) => {
  if (f.redacted === "hash") return "hashed";
  if (!isNum(f.out_of_range_share)) return "–";
  return `${pct(f.out_of_range_share)} (${num(f.out_of_range)})`;
};

export const drawQuality = (quality) => {
  const features = [...quality.features].sort(
    (a, b) => badness(b) - badness(a) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const shown = features.slice(0, TOP);
  const headers = [
    ["Feature"], ["Missing (first)", "num"], ["Missing (last)", "num"],
    ["Range (first window)", "num"], ["Out of range (last)", "num"],
    ["NaN logged (last)", "num"], ["NaN refused", "num"],
  ];
  $("#quality thead").replaceChildren(
    el("tr", {}, headers.map(([text, cls]) => el("th", { class: cls, text }))),
  );
  $("#quality tbody").replaceChildren(
    ...shown.map((f) => {
      const dropped = f.redacted === "drop";
      const missingMore = (f.current_missing_share || 0) - (f.reference_missing_share || 0);
      const bad = missingMore >= NOTABLE || (f.out_of_range_share || 0) >= NOTABLE;
      return el("tr", { class: bad ? "flagged" : null, "data-feature": f.name }, [
        el("td", { class: "name", text: f.name }),
        el("td", { class: "num", text: dropped ? "not logged" : pct(f.reference_missing_share) }),
        el("td", { class: "num", text: dropped ? "not logged" : pct(f.current_missing_share) }),
        el("td", { class: "num", text: range(f) }),
        el("td", { class: "num", text: outOfRange(f) }),
        el("td", { class: "num", text: num(f.current_nonfinite) }),
        el("td", { class: "num", text: num(f.rejected_nonfinite) }),
      ]);
    }),
  );
  let hint = "No predictions yet, so no data to check.";
  if (quality.reference && quality.current) {
    hint = "Per feature, over the feature-drift windows: rows missing it (absent or null), " +
      "values of the last window outside the first window's range (judged once a feature " +
      `has ${quality.min_rows} values in the first window), NaN or infinite values in the ` +
      "lake, and those requests were refused for (422) since the service started.";
    if (features.length > TOP) {
      hint += ` The ${TOP} worst of ${plural(features.length, "feature")}.`;
    }
  }
  $("#quality-hint").textContent = hint;
};
