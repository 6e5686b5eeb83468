/* Feature drift: per feature the population stability index of the last window against
   the first, as a bar against the threshold, the most drifted first; and its card. */

import { $, el, fillCard } from "./dom.js";
import { fixed, isNum, num, plural, seconds, utcText } from "./format.js";

// The table shows this many features, the most drifted first; a search reaches the others.
const TOP = 10;

// The last panel drawn, drawn again as the search changes.
let last = null;

/* Features by PSI, the most drifted first; those without a PSI (too few rows) last. */
const byPsi = (a, b) => {
  const pa = isNum(a.psi) ? a.psi : -1;
  const pb = isNum(b.psi) ? b.psi : -1;
  return pb - pa || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
};

const psiBar = (f, scale, threshold) => {
  const title = `PSI ${fixed(f.psi, 3)} (flagged above ${threshold})`;
  const at = (value) => `${Math.min(100, (100 * value) / scale).toFixed(1)}%`;
  const fill = isNum(f.psi)
    ? el("span", { class: `fill${f.drifted ? " over" : ""}`, style: `width:${at(f.psi)}` })
    : null;
  const mark = el("span", { class: "threshold", style: `left:${at(threshold)}` });
  return el("div", { class: "psi-bar", title }, [fill, mark]);
};

const statusOf = (f, enough) => {
  if (f.psi === null) return el("span", { class: "muted", title: enough, text: "not enough data" });
  return f.drifted
    ? el("span", { class: "badge bad", text: "drifted" })
    : el("span", { class: "badge good", text: "stable" });
};

const headers = (threshold) => [
  ["Feature"],
  [`PSI (dashed: ${threshold})`],
  ["PSI", "num"],
  ["Status"],
  ["Mean (first)", "num"],
  ["Mean (last)", "num"],
  ["Rows (first / last)", "num"],
];

const renderTable = (drift, features, enough) => {
  const query = $("#drift-filter").value.trim().toLowerCase();
  const matches = query ? features.filter((f) => f.name.toLowerCase().includes(query)) : features;
  const shown = query ? matches : matches.slice(0, TOP);
  $("#drift-filter").hidden = features.length <= TOP;
  let note = "";
  if (query) {
    note = `${plural(matches.length, "feature")} of ${features.length} match “${query}”.`;
  } else if (features.length > TOP) {
    note = `The ${TOP} most drifted of ${features.length} features; search to see any other.`;
  }
  $("#drift-shown").textContent = note;
  const psis = features.map((f) => f.psi).filter(isNum);
  const scale = Math.max(drift.threshold * 1.5, psis.length ? Math.max(...psis) * 1.05 : 0);

  $("#drift thead").replaceChildren(
    el("tr", {}, headers(drift.threshold).map(([text, cls]) => el("th", { class: cls, text }))),
  );
  $("#drift tbody").replaceChildren(
    ...shown.map((f) =>
      el("tr", { class: f.drifted ? "flagged" : null, "data-feature": f.name }, [
        el("td", { class: "name", text: f.name }),
        el("td", { class: "bar-cell" }, [psiBar(f, scale, drift.threshold)]),
        el("td", { class: "num", text: fixed(f.psi, 3) }),
        el("td", {}, [statusOf(f, enough)]),
        el("td", { class: "num", text: fixed(f.reference_mean, 3) }),
        el("td", { class: "num", text: fixed(f.current_mean, 3) }),
        el("td", { class: "num", text: `${num(f.reference_rows)} / ${num(f.current_rows)}` }),
      ]),
    ),
  );
};

/* The two windows compared, to a twentieth of their span. */
const describeWindows = (drift, enough) => {
  const { reference, current } = drift;
  if (!reference || !current) return "";
  const step = Math.max(0.1, seconds(current.end) - seconds(reference.start)) / 20;
  const span = (w) =>
    `${utcText(seconds(w.start), step)} → ${utcText(seconds(w.end), step)}, ` +
    plural(w.rows, "row");
  return `First window: ${span(reference)}. Last window: ${span(current)}. ` +
    `A feature ${enough} to get a PSI.`;
};

const renderCard = (drift, features, enough) => {
  const { reference, current } = drift;
  const measured = features.filter((f) => isNum(f.psi)).length;
  const count = drift.drifted.length;
  if (!features.length) {
    fillCard("card-drift", "–", "", reference ? "no features" : "no predictions yet");
  } else if (!measured) {
    const has = reference && current ? ` (has ${num(reference.rows)} / ${num(current.rows)})` : "";
    fillCard("card-drift", "not enough data", "muted", enough + has);
  } else {
    const listed = drift.drifted.slice(0, 5).join(", ") + (count > 5 ? ", …" : "");
    fillCard(
      "card-drift",
      count ? `${count} drifted` : "stable",
      count ? "bad" : "good",
      count ? listed : `${plural(measured, "feature")}, PSI ≤ ${drift.threshold}`,
    );
  }
};

export const drawDrift = (drift) => {
  last = drift;
  const features = [...drift.features].sort(byPsi);
  const enough = `needs ${drift.min_rows} rows in each window`;
  renderTable(drift, features, enough);
  $("#drift-hint").textContent = drift.reference && drift.current
    ? "Population stability index of the last window against the first; above the dashed " +
      `line (${drift.threshold}) a feature is flagged.`
    : "No predictions yet, so no drift to measure.";
  $("#drift-windows").textContent = describeWindows(drift, enough);
  renderCard(drift, features, enough);
};

/* The search box redraws the last panel; a new experiment starts with an empty search. */
export const searchDrift = () => {
  $("#drift-filter").addEventListener("input", () => {
    if (last) drawDrift(last);
  });
};

export const resetDrift = () => {
  last = null;
  $("#drift-filter").value = "";
};
