// The page of `mfrec serve`: plain JavaScript over the service's own JSON routes (no library, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
const K = 10;
let hasTitles = false;
const basket = new Map(); // item id -> label

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail
      : Array.isArray(body.detail) ? body.detail.map((e) => e.msg).join("; ") : response.statusText;
    throw new Error(detail);
  }
  return body;
}

const enc = (id) => encodeURIComponent(String(id));

function label(entry, key) {
  const id = entry[key];
  return entry.title ? `${entry.title} (${id})` : String(id);
}

function showError(element, error) {
  element.textContent = error ? String(error.message || error) : "";
  element.hidden = !error;
}

// One list entry: an item is a button that opens the item (keyboard: Tab, Enter).
function itemEntry(entry, detail) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link";
  button.textContent = label(entry, "item");
  button.dataset.item = String(entry.item);
  button.addEventListener("click", () => showItem(entry.item));
  li.appendChild(button);
  if (detail !== undefined) {
    const span = document.createElement("span");
    span.className = "score";
    span.textContent = detail;
    li.appendChild(span);
  }
  return li;
}

function userEntry(entry) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link";
  button.textContent = String(entry.user);
  button.addEventListener("click", () => showUser(entry.user));
  li.appendChild(button);
  const span = document.createElement("span");
  span.className = "score";
  span.textContent = entry.score.toFixed(3);
  li.appendChild(span);
  return li;
}

function fill(list, entries, make) {
  list.replaceChildren(...entries.map(make));
  if (!entries.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "nothing to show";
    list.appendChild(li);
  }
}

async function showUser(user) {
  showError($("user-error"), null);
  try {
    const [recs, history] = await Promise.all([
      getJSON(`/users/${enc(user)}/recommendations?k=${K}`),
      getJSON(`/users/${enc(user)}/history?k=20`),
    ]);
    $("user-name").textContent = String(recs.user);
    $("history-total").textContent = String(history.total);
    fill($("recommendations"), recs.items, (e) => itemEntry(e, e.score.toFixed(3)));
    fill($("history"), history.items, (e) => itemEntry(e, `value ${e.value}`));
    $("user-view").hidden = false;
    $("user-query").value = String(recs.user);
    const url = new URL(window.location);
    url.searchParams.set("user", String(recs.user));
    window.history.replaceState(null, "", url);
  } catch (error) {
    $("user-view").hidden = true;
    showError($("user-error"), error);
  }
}

async function showItem(item) {
  const [similar, users] = await Promise.all([
    getJSON(`/items/${enc(item)}/similar?k=${K}`),
    getJSON(`/items/${enc(item)}/users?k=${K}`),
  ]);
  $("item-name").textContent = similar.title ? `${similar.title} (${similar.item})` : String(similar.item);
  fill($("similar-items"), similar.items, (e) => itemEntry(e, e.score.toFixed(3)));
  fill($("item-users"), users.users, userEntry);
  $("item-view").hidden = false;
  $("item-title").scrollIntoView({ behavior: "smooth", block: "start" });
}

function renderBasket() {
  const list = $("basket");
  list.replaceChildren();
  for (const [id, text] of basket) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${text} \u00d7`;
    button.setAttribute("aria-label", `remove ${text}`);
    button.addEventListener("click", () => { basket.delete(id); renderBasket(); });
    li.appendChild(button);
    list.appendChild(li);
  }
  if (!basket.size) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "none yet";
    list.appendChild(li);
  }
  $("fold-in").disabled = basket.size === 0;
}

async function findItems(query) {
  const found = await getJSON(`/search/items?q=${encodeURIComponent(query)}&limit=12`);
  const list = $("item-results");
  list.replaceChildren(...found.results.map((entry) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    const text = entry.title ? `${entry.title} (${entry.id})` : String(entry.id);
    button.textContent = `+ ${text}`;
    button.addEventListener("click", () => { basket.set(entry.id, text); renderBasket(); });
    li.appendChild(button);
    return li;
  }));
}

async function foldIn() {
  showError($("scratch-error"), null);
  try {
    const body = JSON.stringify({ items: [...basket.keys()], k: K });
    const recs = await getJSON("/recommendations", {
      method: "POST", headers: { "Content-Type": "application/json" }, body,
    });
    fill($("scratch-recommendations"), recs.items, (e) => itemEntry(e, e.score.toFixed(3)));
  } catch (error) {
    showError($("scratch-error"), error);
  }
}

async function suggestUsers(query) {
  const found = await getJSON(`/search/users?q=${encodeURIComponent(query)}&limit=20`);
  $("user-options").replaceChildren(...found.results.map((entry) => {
    const option = document.createElement("option");
    option.value = String(entry.id);
    return option;
  }));
}

async function start() {
  try {
    const info = await getJSON("/catalog");
    hasTitles = info.has_titles;
    $("model-line").textContent =
      `${info.model_class}: ${info.users.toLocaleString()} users, ${info.items.toLocaleString()} items` +
      (info.dataset ? ` (${info.dataset})` : "");
    $("no-titles").hidden = hasTitles;
  } catch (error) {
    $("model-line").textContent = `the service did not answer: ${error.message}`;
    return;
  }
  $("user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = $("user-query").value.trim();
    if (user) showUser(user);
  });
  $("user-query").addEventListener("input", (event) => suggestUsers(event.target.value).catch(() => {}));
  $("item-form").addEventListener("submit", (event) => {
    event.preventDefault();
    findItems($("item-query").value).catch((error) => showError($("scratch-error"), error));
  });
  $("fold-in").addEventListener("click", foldIn);
  renderBasket();
  const user = new URLSearchParams(window.location.search).get("user");
  if (user) await showUser(user);
}

start();
