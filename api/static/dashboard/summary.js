/* The experiment's header, verdict and cards: sample-ratio test, allocation version and
   requests. */

import { $, badge, fillCard } from "./dom.js";
import { isNum, num, pct, sig } from "./format.js";

export const renderSummary = (report) => {
  $("#exp-name").textContent = report.experiment;
  $("#exp-status").replaceWith(Object.assign(badge(report.status), { id: "exp-status" }));
  $("#exp-reward").textContent = `reward: ${report.reward}`;
  const verdict = $("#verdict");
  verdict.textContent = report.verdict;
  const tone = report.srm_mismatch ? " bad" : report.winner ? " good" : "";
  verdict.className = `verdict${tone}`;

  const tested = report.srm_p_value !== null;
  fillCard(
    "card-srm",
    !tested ? "–" : report.srm_mismatch ? "mismatch" : "ok",
    report.srm_mismatch ? "bad" : tested ? "good" : "",
    tested ? `p = ${sig(report.srm_p_value, 3)} (flag below 0.001)` : "needs traffic on two arms",
  );
  const arms = report.variants.filter((v) => v.role === "arm");
  fillCard(
    "card-allocation",
    report.allocation_version === null ? "–" : `v${report.allocation_version}`,
    undefined,
    arms.filter((v) => isNum(v.weight)).map((v) => `${v.name} ${pct(v.weight, 0)}`).join(" · "),
  );
  const total = (field) => arms.reduce((sum, v) => sum + v[field], 0);
  fillCard(
    "card-requests",
    num(total("requests")),
    undefined,
    `${num(total("rewarded"))} with feedback`,
  );
};
