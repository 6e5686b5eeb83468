/* The list of experiments: one row each, a click on the row opens it. */

import { $, badge, el } from "./dom.js";
import { num } from "./format.js";

const experimentHref = (name) => `#/experiments/${encodeURIComponent(name)}`;

export const renderList = (experiments) => {
  $("#no-experiments").hidden = experiments.length > 0;
  const rows = experiments.map((e) => {
    const href = experimentHref(e.name);
    const tone = e.srm_mismatch ? " bad" : e.winner ? " good" : "";
    return el("tr", { class: "link-row", "data-href": href }, [
      el("td", {}, [el("a", { href, text: e.name })]),
      el("td", {}, [badge(e.status)]),
      el("td", { text: e.reward }),
      el("td", { text: e.policy }),
      el("td", { text: e.variants.join(", ") }),
      el("td", {
        class: "num",
        text: e.allocation_version === null ? "–" : `v${e.allocation_version}`,
      }),
      el("td", { class: "num", text: num(e.requests) }),
      el("td", { class: `verdict-cell${tone}`, text: e.verdict }),
    ]);
  });
  $("#experiments tbody").replaceChildren(...rows);
};

/* A click anywhere on a row (but its link, which navigates itself) opens the experiment. */
export const followRows = () => {
  $("#experiments tbody").addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a")) window.location.hash = row.dataset.href;
  });
};
