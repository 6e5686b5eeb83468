/* The inference lake under the experiment list: per table its size, files (how many are
   small flush files still waiting for compaction) and the Delta table's published
   version, from /v1/lake. */

import { $, el } from "./dom.js";
import { bytes, num, plural, seconds, utcText } from "./format.js";

const TABLES = ["predictions", "feedback"];

export const renderLake = (lake) => {
  const rows = TABLES.filter((name) => lake.tables[name]).map((name) => {
    const t = lake.tables[name];
    const version = t.delta_version === null ? "not published yet" : `v${t.delta_version}`;
    const compacted = t.last_compaction_at === null
      ? "never"
      : utcText(seconds(t.last_compaction_at));
    return el("tr", { "data-table": name }, [
      el("td", { class: "name", text: name }),
      el("td", { class: "num lake-bytes", text: bytes(t.bytes) }),
      el("td", { class: "num lake-files", text: num(t.live_files) }),
      el("td", {
        class: "num lake-small",
        text: `${num(t.small_files)} small · ${num(t.published_files)} published`,
      }),
      el("td", { class: "num lake-rows", text: num(t.rows) }),
      el("td", { class: "num lake-version", text: version }),
      el("td", { class: "lake-compacted", text: compacted }),
    ]);
  });
  $("#lake-tables tbody").replaceChildren(...rows);
  const replaced = TABLES.reduce((sum, name) => sum + (lake.tables[name]?.replaced_files ?? 0), 0);
  $("#lake-note").textContent = replaced
    ? `${plural(replaced, "replaced file")} awaiting deletion after the grace period.`
    : "";
};
