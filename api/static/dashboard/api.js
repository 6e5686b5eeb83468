/* The /dashboard/api JSON panels, fetched with the admin token. The token comes once in
   ?token=, is kept in localStorage and leaves the address bar; it goes out as a bearer
   header. */

const API = "/dashboard/api/experiments";
const TOKEN_KEY = "banditlake.adminToken";

// Where localStorage is unavailable (a sandboxed page), the token lives as long as the page.
let pageToken = null;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/* Take ?token= from the address: keep it (an empty one forgets the kept token) and remove
   it from the address bar. */
export const takeToken = () => {
  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  if (token === null) return;
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch (error) {
    pageToken = token;
  }
  params.delete("token");
  const query = params.toString();
  const { pathname, hash } = window.location;
  window.history.replaceState(null, "", pathname + (query ? `?${query}` : "") + hash);
};

const token = () => {
  if (pageToken) return pageToken;
  try {
    return window.localStorage.getItem(TOKEN_KEY);
  } catch (error) {
    return null;
  }
};

const getJson = async (path, signal) => {
  const headers = { Accept: "application/json" };
  const kept = token();
  if (kept) headers.Authorization = `Bearer ${kept}`;
  const response = await fetch(path, { headers, cache: "no-store", signal });
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error
      ? body.error.message
      : `The server answered ${response.status}.`;
    throw new ApiError(response.status, message);
  }
  return body;
};

export const fetchExperiments = (signal) => getJson(API, signal);

/* The lake's inventory per table (the admin token opens this operations endpoint too). */
export const fetchLake = (signal) => getJson("/v1/lake", signal);

/* Open alerts and the latest resolved ones, every experiment's. */
export const fetchAlerts = (signal) => getJson("/v1/alerts?recent=20", signal);

/* The panels of one experiment and its settings (retention, redaction) from the
   policy API, each settled on its own so that one failing still lets the others render.
   ``buckets`` is how many time buckets the series asks for. */
export const fetchPanels = async (name, { hours, buckets }, signal) => {
  const base = `${API}/${encodeURIComponent(name)}`;
  const [report, history, series, drift, settings, predictionDrift, quality] =
    await Promise.allSettled([
      getJson(`${base}/report`, signal),
      getJson(`${base}/allocations`, signal),
      getJson(`${base}/timeseries?hours=${hours}&buckets=${buckets}`, signal),
      getJson(`${base}/drift?hours=${hours}`, signal),
      getJson(`/v1/experiments/${encodeURIComponent(name)}`, signal),
      getJson(`${base}/prediction-drift?hours=${hours}`, signal),
      getJson(`${base}/quality?hours=${hours}`, signal),
    ]);
  return { report, history, series, drift, settings, predictionDrift, quality };
};
