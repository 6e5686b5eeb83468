/* banditlake experiment dashboard: plain JavaScript over the /dashboard/api JSON panels,
   charts drawn with the vendored uPlot (a classic script loaded before these modules).

   One module per panel; this one wires them: the route, the refresh loop and the controls.

   Style, in every module: every function is an arrow; named ones are bound to `const`
   (no `function` keyword anywhere), callbacks are inline arrows; `class` only for the one
   Error subclass; variables are `const` or `let`; named exports only. Formatting: 2-space
   indent, semicolons, double quotes, template literals to put values into text (`+` only
   to append an optional piece or continue a long string), trailing commas in multi-line
   lists, lines of at most 100 characters. */

import {
  ApiError, fetchAlerts, fetchExperiments, fetchLake, fetchPanels, takeToken,
} from "./api.js";
import { renderAlerts } from "./alerts.js";
import { drawAllocation } from "./allocation.js";
import { charts, colorOf, fitCharts, resetCharts } from "./charts.js";
import { $, showBanner } from "./dom.js";
import { drawDrift, resetDrift, searchDrift } from "./drift.js";
import { utcText } from "./format.js";
import { renderLake } from "./lake.js";
import { followRows, renderList } from "./list.js";
import { drawPbest } from "./pbest.js";
import { drawPredictionDrift, drawQuality } from "./quality.js";
import { bucketCount, drawSeries } from "./series.js";
import { renderSettings, resetSettings } from "./settings.js";
import { renderSummary } from "./summary.js";
import { renderTests } from "./tests.js";

const REFRESH_MS = 5000;

const state = { paused: false, inflight: null, timer: null, charts };

/* /dashboard?experiment=NAME becomes the hash route #/experiments/NAME (unless the address
   has a route already). */
const takeExperiment = () => {
  const params = new URLSearchParams(window.location.search);
  const name = params.get("experiment");
  if (name === null) return;
  params.delete("experiment");
  const query = params.toString();
  const { pathname, hash } = window.location;
  const routed = hash.replace(/^#\/?/, "");
  const target = name && !routed ? `#/experiments/${encodeURIComponent(name)}` : hash;
  window.history.replaceState(null, "", pathname + (query ? `?${query}` : "") + target);
};

/* #/experiments/NAME (or the short #/NAME) shows one experiment; it survives a reload. */
const route = () => {
  const match = window.location.hash.match(/^#\/(?:experiments\/)?(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
};

const hours = () => Number($("#hours").value) || 24;

/* The list and the lake under it, each rendered when it arrives; a failing lake still lets
   the list render. */
const refreshList = async (signal) => {
  const [experiments, lake, alerts] = await Promise.allSettled([
    fetchExperiments(signal),
    fetchLake(signal),
    fetchAlerts(signal),
  ]);
  if (signal.aborted) return;
  if (experiments.status === "fulfilled") renderList(experiments.value);
  if (lake.status === "fulfilled") renderLake(lake.value);
  if (alerts.status === "fulfilled") renderAlerts(alerts.value);
  const failed = [experiments, lake, alerts].find((p) => p.status === "rejected");
  if (failed) throw failed.reason;
};

const refreshExperiment = async (name, signal) => {
  if ($("#exp-name").textContent !== name) {
    $("#exp-name").textContent = name;
    resetSettings();
  }
  const h = hours();
  const panels = await fetchPanels(name, { hours: h, buckets: bucketCount(h) }, signal);
  if (signal.aborted) return;
  const { report, history, series, drift, settings, predictionDrift, quality } = panels;
  if (report.status === "fulfilled") {
    // Colours follow the report's order of variants, on every chart and in the table.
    for (const v of report.value.variants) colorOf(v.name);
    renderSummary(report.value);
    renderTests(report.value);
    if (history.status === "fulfilled") {
      const end = drawAllocation(history.value);
      drawPbest(history.value, report.value, end);
    }
  }
  if (series.status === "fulfilled") drawSeries(series.value);
  if (drift.status === "fulfilled") drawDrift(drift.value);
  if (predictionDrift.status === "fulfilled") drawPredictionDrift(predictionDrift.value);
  if (quality.status === "fulfilled") drawQuality(quality.value);
  if (settings.status === "fulfilled") renderSettings(settings.value);
  const failed = Object.values(panels).find((p) => p.status === "rejected");
  if (failed) throw failed.reason;
};

/* Fetch and render the current view. A periodic tick leaves a refresh in flight alone
   (a slow server gets no pile-up); a user's action (``supersede``) aborts it, so the view
   just asked for renders at once and the abandoned one never paints over it. */
const refresh = async (supersede) => {
  if (state.inflight) {
    if (!supersede) return;
    state.inflight.abort();
  }
  const controller = new AbortController();
  const { signal } = controller;
  state.inflight = controller;
  const name = route();
  $("#list-view").hidden = name !== null;
  $("#experiment-view").hidden = name === null;
  document.title = `${name === null ? "experiments" : name} · banditlake`;
  try {
    if (name === null) await refreshList(signal);
    else await refreshExperiment(name, signal);
    if (signal.aborted) return;
    showBanner("");
    const paused = state.paused ? " · paused" : "";
    $("#updated").textContent = `updated ${utcText(Date.now() / 1000, 1)}${paused}`;
  } catch (error) {
    if (signal.aborted) return;
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      showBanner(
        `${error.message} Open this page as /dashboard?token=<admin token> ` +
          "(it is then kept in this browser).",
      );
    } else {
      showBanner(error.message || String(error));
    }
    $("#updated").textContent = `update failed ${utcText(Date.now() / 1000, 1)}`;
  } finally {
    if (state.inflight === controller) state.inflight = null;
  }
};

const schedule = () => {
  window.clearInterval(state.timer);
  const tick = () => {
    if (!document.hidden) refresh();
  };
  state.timer = state.paused ? null : window.setInterval(tick, REFRESH_MS);
};

const listen = () => {
  window.addEventListener("hashchange", () => {
    resetCharts();
    resetDrift();
    refresh(true);
  });
  $("#hours").addEventListener("change", () => refresh(true));
  searchDrift();
  $("#pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("#pause").textContent = state.paused ? "Resume" : "Pause";
    schedule();
    if (!state.paused) refresh(true);
  });
  followRows();
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(fitCharts, 150);
  });
};

takeExperiment();
takeToken();
listen();
// For the browser tests and a curious console: refresh on demand, and the charts drawn.
window.banditlakeDashboard = { refresh, state };
refresh();
schedule();
