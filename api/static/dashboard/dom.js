/* DOM helpers. Every value from the server goes into the page as text (textContent),
   never as HTML. */

export const $ = (selector, root = document) => root.querySelector(selector);

export const byId = (id) => document.getElementById(id);

/* An element with attributes (``text`` sets its text, ``style`` its inline style; null,
   undefined and false are left out) and children (nodes, or values shown as text). */
export const el = (tag, attrs = {}, children = []) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

export const badge = (status) => el("span", { class: `badge status-${status}`, text: status });

/* A card's value and note; ``tone`` ("good", "bad", "muted" or "") colours the value. */
export const fillCard = (id, value, tone, note) => {
  const card = byId(id);
  const shown = $(".value", card);
  shown.textContent = value;
  if (tone !== undefined) shown.className = tone ? `value ${tone}` : "value";
  $(".note", card).textContent = note;
};

export const showBanner = (message) => {
  const banner = byId("banner");
  banner.textContent = message;
  banner.hidden = !message;
};
