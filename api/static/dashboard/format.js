/* Numbers and times as the page shows them. One time format everywhere: ISO date and
   24-hour time in UTC, "2026-12-02 14:05 UTC"; seconds (and tenths) are added only where
   the span shown needs them. A missing or non-finite value reads "–". */

export const isNum = (x) => typeof x === "number" && Number.isFinite(x);

export const num = (x, digits = 0) =>
  isNum(x) ? x.toLocaleString("en-US", { maximumFractionDigits: digits }) : "–";

export const fixed = (x, digits) => (isNum(x) ? x.toFixed(digits) : "–");

export const sig = (x, digits = 3) => (isNum(x) ? Number(x.toPrecision(digits)).toString() : "–");

export const pct = (x, digits = 1) => (isNum(x) ? `${(100 * x).toFixed(digits)}%` : "–");

export const pval = (p) => {
  if (!isNum(p)) return "–";
  return p < 0.001 ? "<0.001" : p.toFixed(3);
};

export const interval = (lo, hi, digits) =>
  isNum(lo) && isNum(hi) ? `[${fixed(lo, digits)}, ${fixed(hi, digits)}]` : "";

/* A size in bytes with a binary unit: "812 B", "9.3 MiB". */
export const bytes = (n) => {
  if (!isNum(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? num(value) : sig(value, 3)} ${units[unit]}`;
};

export const plural = (n, word) => `${num(n)} ${word}${n === 1 ? "" : "s"}`;

/* A bucket width in its natural unit: "1 h", "30 min", "0.1 s". */
export const duration = (s) => {
  if (s >= 3600 && s % 3600 === 0) return `${s / 3600} h`;
  if (s >= 60 && s % 60 === 0) return `${s / 60} min`;
  return `${sig(s, 3)} s`;
};

/* Seconds since the epoch of an ISO timestamp from the server. */
export const seconds = (iso) => Date.parse(iso) / 1000;

const pad = (n) => String(n).padStart(2, "0");

export const utcDate = (d) =>
  `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;

/* The clock, to the minute; to the second when ``step`` (seconds) is under a minute, to the
   tenth under a second. */
export const utcClock = (d, step) => {
  let text = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  if (step < 60) text += `:${pad(d.getUTCSeconds())}`;
  if (step < 1) text += `.${Math.floor(d.getUTCMilliseconds() / 100)}`;
  return text;
};

export const utcText = (secs, step = 60) => {
  const d = new Date(secs * 1000);
  return `${utcDate(d)} ${utcClock(d, step)} UTC`;
};
