/* The experiment's data settings under its title: how long the lake keeps its rows and
   which features the lake drops or holds as a keyed hash (from /v1/experiments/NAME). */

import { $ } from "./dom.js";
import { plural } from "./format.js";

export const retentionText = (days) => (days === null ? "kept forever" : plural(days, "day"));

export const redactionText = ({ drop, hash }) => {
  const parts = [];
  if (drop.length) parts.push(`drops ${drop.join(", ")}`);
  if (hash.length) parts.push(`hashes ${hash.join(", ")}`);
  return parts.length ? parts.join(" · ") : "none: every feature is logged";
};

export const renderSettings = (experiment) => {
  $("#exp-retention").textContent = retentionText(experiment.retention_days);
  $("#exp-redaction").textContent = redactionText(experiment.redaction);
};

/* Another experiment's settings must not show while this one's are on their way. */
export const resetSettings = () => {
  $("#exp-retention").textContent = "–";
  $("#exp-redaction").textContent = "–";
};
