/* Alerts under the experiment list: every open alert, then the latest resolved ones, from
   /v1/alerts (the rules and targets are set through the policy API). */

import { $, el } from "./dom.js";
import { num, plural, seconds, sig, utcText } from "./format.js";

const row = (alert) => {
  const d = alert.deliveries;
  const sent = `${num(d.sent)} sent` + (d.pending ? ` · ${num(d.pending)} pending` : "")
    + (d.failed ? ` · ${num(d.failed)} failed` : "");
  const when = alert.state === "open" ? alert.opened_at : alert.resolved_at;
  return el("tr", { "data-alert": alert.id, class: `alert-${alert.state}` }, [
    el("td", { class: "alert-state", text: alert.state }),
    el("td", { class: "name", text: alert.experiment }),
    el("td", { text: alert.kind }),
    el("td", { text: alert.subject }),
    el("td", { class: "num", text: `${sig(alert.value)} / ${sig(alert.threshold)}` }),
    el("td", { class: "alert-when", text: utcText(seconds(when)) }),
    el("td", { class: "alert-sent", text: sent }),
    el("td", { class: "alert-summary", text: alert.summary }),
  ]);
};

export const renderAlerts = (alerts) => {
  const rows = [...alerts.open, ...alerts.recent].map(row);
  $("#alerts tbody").replaceChildren(...rows);
  $("#alerts-note").textContent = alerts.open.length
    ? `${plural(alerts.open.length, "open alert")}.`
    : "No open alert.";
};
