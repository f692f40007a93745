// The controller's web page: Accounts, and Settings > Servers. Plain JavaScript over the
// Management API.
// The admin token lives in sessionStorage only (gone when the browser session ends).
"use strict";

const REFRESH_MS = Number(new URLSearchParams(location.search).get("refresh")) || 3000;
const ROLES = ["web", "mail", "dns", "db", "backup"];
const FIELDS = ["name", "hostname", "mail_hostname", "agent_url", "agent_token", "max_accounts",
  "panel_url", "phpmyadmin_path", "roundcube_path"];

const $ = (sel) => document.querySelector(sel);
let servers = [];
let shown = null; // the list last rendered, as JSON
let editing = null; // the server being edited, or null when adding
let sslServer = null;
let timer = null;
let accounts = [];
let shownAccounts = null; // the accounts and servers last rendered, as JSON
let auditNext = null; // the audit log's next page, if any

function token() { return sessionStorage.getItem("enconf-admin-token"); }

/** Who is signed in (`GET /api/v1/session`): name, role and what the role may do. */
function session() {
  try { return JSON.parse(sessionStorage.getItem("enconf-session")) || null; } catch { return null; }
}

/** Whether the signed-in role may do what `permission` covers (`accounts`, `servers`, …). */
function can(permission) { return (session()?.permissions || []).includes(permission); }

/** Marks a control as needing a permission: it is not shown to a role without it. */
function needs(permission, node) { node.dataset.needs = permission; return node; }

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.field = body?.error?.field;
  }
}

/** One request: the answer's data and its `Link` next page (a path under /api/v1), if any. */
async function request(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`/api/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) { logout(); throw new ApiError(401, await res.json().catch(() => null)); }
  if (res.status === 204) return { data: null, next: null };
  const text = await res.text();
  const data = text ? (res.headers.get("content-type") || "").includes("json") ? JSON.parse(text) : text : null;
  if (!res.ok) throw new ApiError(res.status, data);
  const link = /<\/api\/v1([^>]*)>;\s*rel="next"/.exec(res.headers.get("link") || "");
  return { data, next: link ? link[1] : null };
}

async function api(method, path, body) {
  return (await request(method, path, body)).data;
}

/** Up to `pages` pages of a list, following its `Link` header: the items and whether more remain. */
async function apiPages(path, pages = Infinity) {
  const items = [];
  let next = path;
  for (let n = 0; next && n < pages; n++) {
    const page = await request("GET", next);
    items.push(...page.data);
    next = page.next;
  }
  return { items, more: next !== null };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// ---- views and login ----------------------------------------------------------------------

const VIEWS = ["servers", "accounts", "admins", "audit"];

/** The view the address names: `#accounts`, `#admins`, `#audit` or `#servers` (the default). */
function view() {
  const named = location.hash.slice(1);
  if (named === "admins" && can("admins")) return "admins";
  if (named === "audit" && can("audit")) return "audit";
  return named === "accounts" ? "accounts" : "servers";
}

function show() {
  const logged = Boolean(token());
  if (logged && !session()) {
    // Signed in before this page knew about roles: ask who the token is first.
    request("GET", "/session").then((page) => {
      sessionStorage.setItem("enconf-session", JSON.stringify(page.data));
      show();
    }).catch(() => {});
    return;
  }
  for (const p of ["accounts", "servers", "audit", "admins"]) document.body.classList.toggle(`may-${p}`, can(p));
  const who = session();
  $("#who").textContent = who ? `${who.name} (${who.role})` : "";
  $("#login").hidden = logged;
  $("#nav").hidden = !logged;
  for (const v of VIEWS) $(`#${v}`).hidden = !logged || view() !== v;
  document.querySelectorAll("#nav a[data-view]").forEach((a) => {
    if (a.dataset.view === view()) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  clearInterval(timer);
  if (logged && view() === "admins") {
    refreshAdmins();
  } else if (logged && view() === "audit") {
    loadAudit();
  } else if (logged) {
    const tick = () => (view() === "accounts" ? refreshAccounts() : refresh());
    tick();
    timer = setInterval(tick, REFRESH_MS);
  } else {
    $("#login-token").focus();
  }
}

window.addEventListener("hashchange", show);

function logout() {
  sessionStorage.removeItem("enconf-admin-token");
  sessionStorage.removeItem("enconf-session");
  servers = [];
  shown = null;
  accounts = [];
  shownAccounts = null;
  render();
  renderAccounts();
  show();
}

$("#login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const value = $("#login-token").value.trim();
  $("#login-error").textContent = "";
  const res = await fetch("/api/v1/session", { headers: { Authorization: `Bearer ${value}` } });
  if (!res.ok) {
    $("#login-error").textContent = res.status === 401 ? "That token is not an administrator's."
      : res.status === 429 ? `Too many failed sign-ins from this address: try again in ${res.headers.get("retry-after") || "a few"} seconds.`
      : `The controller answered ${res.status}.`;
    return;
  }
  sessionStorage.setItem("enconf-session", JSON.stringify(await res.json()));
  sessionStorage.setItem("enconf-admin-token", value);
  $("#login-token").value = "";
  show();
});
$("#logout").addEventListener("click", logout);

// ---- the table ----------------------------------------------------------------------------

async function refresh() {
  try {
    const list = (await apiPages("/servers?limit=1000")).items;
    $("#load-error").textContent = "";
    // Unchanged rows are left alone, so an open tooltip (the last error) stays open.
    const seen = JSON.stringify(list);
    if (seen === shown) return;
    servers = list;
    shown = seen;
    render();
  } catch (err) {
    if (err.status !== 401) $("#load-error").textContent = `Cannot load the servers: ${err.message}`;
  }
}

// Icons are inline SVG shapes: no icon font or emoji font is needed on the admin's machine.
const ICONS = {
  key: "M12.65 10A6 6 0 1 0 12.65 14H17v4h4v-4h2v-4H12.65zM7 14a2 2 0 1 1 0-4 2 2 0 0 1 0 4z",
  edit: "M3 17.25V21h3.75L17.81 9.94l-3.75-3.75L3 17.25zm17.71-10.21a1 1 0 0 0 0-1.41l-2.34-2.34a1 1 0 0 0-1.41 0l-1.83 1.83 3.75 3.75 1.83-1.83z",
  script: "M20 4H4a2 2 0 0 0-2 2v12a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2zm0 14H4V8h16v10zM6.5 10.5 10 13l-3.5 2.5V10.5zM11 15h6v1.5h-6V15z",
  lock: "M18 8h-1V6a5 5 0 0 0-10 0v2H6a2 2 0 0 0-2 2v10a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V10a2 2 0 0 0-2-2zm-6 9a2 2 0 1 1 0-4 2 2 0 0 1 0 4zm3.1-9H8.9V6a3.1 3.1 0 0 1 6.2 0v2z",
  upgrade: "M12 2 5 9h4v6h6V9h4l-7-7zM5 18h14v2H5v-2z",
  trash: "M6 19a2 2 0 0 0 2 2h8a2 2 0 0 0 2-2V7H6v12zM19 4h-3.5l-1-1h-5l-1 1H5v2h14V4z",
  move: "M16 13v-2H7V8l-4 4 4 4v-3h9zm4-9h-8v2h8v12h-8v2h8a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2z",
  mail: "M20 4H4a2 2 0 0 0-2 2v12a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2zm0 4-8 5-8-5V6l8 5 8-5v2z",
  db: "M12 2C7.6 2 4 3.8 4 6v12c0 2.2 3.6 4 8 4s8-1.8 8-4V6c0-2.2-3.6-4-8-4zm0 2c3.9 0 6 1.5 6 2s-2.1 2-6 2-6-1.5-6-2 2.1-2 6-2zm6 14c0 .5-2.1 2-6 2s-6-1.5-6-2v-2.3c1.5.8 3.6 1.3 6 1.3s4.5-.5 6-1.3V18zm0-5c0 .5-2.1 2-6 2s-6-1.5-6-2v-2.3c1.5.8 3.6 1.3 6 1.3s4.5-.5 6-1.3V13z",
  backup: "M19.4 10A7.5 7.5 0 0 0 5.2 8.3 6 6 0 0 0 6 20h13a5 5 0 0 0 .4-10zM13 13v4h-2v-4H8l4-4 4 4h-3z",
  dns: "M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm6.9 6h-2.9a15.7 15.7 0 0 0-1.4-3.6A8 8 0 0 1 18.9 8zM12 4c.8 1.2 1.5 2.5 1.9 4h-3.8c.4-1.4 1.1-2.8 1.9-4zM4.3 14a8.2 8.2 0 0 1 0-4h3.4a16.5 16.5 0 0 0 0 4H4.3zm.8 2h3a15.7 15.7 0 0 0 1.4 3.6A8 8 0 0 1 5.1 16zM8 8H5.1a8 8 0 0 1 4.3-3.6C8.8 5.5 8.4 6.7 8 8zm4 12c-.8-1.2-1.5-2.5-1.9-4h3.8c-.4 1.4-1.1 2.8-1.9 4zm2.3-6H9.7a14.7 14.7 0 0 1 0-4h4.6a14.7 14.7 0 0 1 0 4zm.3 5.6c.6-1.1 1.1-2.3 1.4-3.6h3a8 8 0 0 1-4.4 3.6zM16.3 14a16.5 16.5 0 0 0 0-4h3.4a8.2 8.2 0 0 1 0 4h-3.4z",
};

function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

function iconButton(label, name, onclick) {
  return el("button", { type: "button", class: "icon", "aria-label": label, title: label, onclick }, icon(name));
}

// A dialog gives the focus back to the button that opened it; when a refresh has rebuilt the
// rows meanwhile, that button is gone, so the focus goes to its replacement.
let opener = null;
document.addEventListener("focusin", (e) => {
  if (e.target.closest?.("#server-table, #add-server, #account-table, #add-account")) opener = e.target;
});
document.querySelectorAll("dialog").forEach((d) => d.addEventListener("close", () => {
  if (!opener || opener.isConnected) return; // the browser has given it back
  const label = opener.getAttribute("aria-label");
  const again = [...document.querySelectorAll("table button[aria-label]")].find((b) => b.getAttribute("aria-label") === label);
  if (again) again.focus();
}));

/** Replaces a table body's rows; a keyboard user keeps the focus on the same button. */
function replaceRows(body, rows) {
  const focused = body.contains(document.activeElement) ? document.activeElement.getAttribute("aria-label") : null;
  body.replaceChildren(...rows);
  if (focused) {
    const again = [...body.querySelectorAll("button[aria-label]")].find((b) => b.getAttribute("aria-label") === focused);
    if (again) again.focus();
  }
}

function render() {
  const body = $("#server-table tbody");
  const rows = servers.map((s) => {
    const reach = el("span", {
      class: `dot ${s.reachable ? "up" : "down"}`,
      role: "img",
      "aria-label": s.reachable ? "reachable" : `unreachable: ${s.last_error || "not checked yet"}`,
      title: s.reachable ? `reachable, last seen ${s.last_seen}` : (s.last_error || "not checked yet"),
      "data-reachable": String(s.reachable),
    });
    const update = s.update_available
      ? el("span", { class: "badge", title: "A newer agent release is available" }, "Available")
      : s.agent_version ? el("span", { class: "empty" }, "Up to date") : "—";
    const td = (label, content, cls) => el("td", cls ? { "data-label": label, class: cls } : { "data-label": label }, content);
    return el("tr", { "data-server": String(s.id), "data-name": s.name },
      td("Name", s.name),
      td("Hostname", s.hostname),
      td("Agent URL", s.warning
        ? el("span", {}, s.agent_url, " ", el("span", { class: "badge", title: s.warning, role: "note", "aria-label": s.warning }, "plain HTTP"))
        : s.agent_url, "mono"),
      td("Roles", s.roles.join(", ")),
      td("Max. Accounts", s.max_accounts == null ? "—" : String(s.max_accounts)),
      td("Agent Version", s.agent_version || "—"),
      td("Reachable", el("span", { class: "reach" }, reach, s.reachable ? "Online" : "Offline")),
      td("Update", update),
      td("Active", s.active ? "Yes" : "No"),
      td("Accounts", String(s.accounts)),
      el("td", { class: "row-actions actions-col", "data-label": "" },
        ...[iconButton(`Edit ${s.name}`, "edit", () => openForm(s)),
          iconButton(`Installation script for ${s.name}`, "script", () => openScript(s)),
          iconButton(`SSL for ${s.name}`, "lock", () => openSsl(s)),
          iconButton(`Rotate the token of ${s.name}`, "key", () => rotateToken(s)),
          ...(s.update_available ? [iconButton(`Update the agent of ${s.name}`, "upgrade", () => updateAgent(s))] : []),
          iconButton(`Delete ${s.name}`, "trash", () => removeServer(s))].map((b) => needs("servers", b)),
      ));
  });
  replaceRows(body, rows);
  $("#no-servers").hidden = servers.length > 0;
}

/** Gives the server's agent a new token; the agent takes it before the old one is dropped. */
async function rotateToken(s) {
  if (!confirm(`Give the agent of ${s.name} a new token? The old one stops working shortly after.`)) return;
  $("#servers-error").textContent = "";
  try {
    await api("POST", `/servers/${s.id}/rotate-token`);
    $("#servers-error").textContent = "";
  } catch (err) {
    $("#servers-error").textContent = `The token of ${s.name} was not changed: ${err.message}`;
  }
}

/** Starts an update job for the server's agent; the badge goes once it reports the new version. */
async function updateAgent(s) {
  if (!confirm(`Upgrade the agent of ${s.name}? It restarts once the new package is installed.`)) return;
  try {
    const job = await api("POST", `/servers/${s.id}/update`);
    $("#servers-error").textContent = `Updating the agent of ${s.name} to ${job.version} (job ${job.id}).`;
  } catch (err) {
    $("#servers-error").textContent = `Cannot update the agent of ${s.name}: ${err.message}`;
  }
}

async function removeServer(s) {
  if (!confirm(`Delete the server ${s.name}?`)) return;
  try {
    await api("DELETE", `/servers/${s.id}`);
    $("#servers-error").textContent = "";
    await refresh();
  } catch (err) {
    $("#servers-error").textContent = err.code === "server_has_accounts"
      ? `${s.name} cannot be deleted: ${err.message}`
      : `Cannot delete ${s.name}: ${err.message}`;
  }
}

// ---- add / edit ---------------------------------------------------------------------------

function clearErrors(form) {
  form.querySelectorAll(".error").forEach((p) => { p.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach((i) => i.removeAttribute("aria-invalid"));
}

/**
 * Shows an API error beside the field it names, or at the form. The field is looked up as it
 * is (`servers.mail`), then without its index (`roles[1]` → roles), then without its part
 * (`php.memory_limit_mb` → php).
 */
function showError(form, err, fallback) {
  const field = err.field || "";
  const names = [field, field.replace(/\[.*$/, ""), field.replace(/\[.*$/, "").replace(/\..*$/, "")];
  const name = field && names.find((n) => form.querySelector(`.error[data-for="${n}"]`));
  if (name) {
    form.querySelector(`.error[data-for="${name}"]`).textContent = err.message;
    const input = form.querySelector(`[name="${name}"]`);
    if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
  } else {
    fallback.textContent = err.message;
  }
}

function openForm(server) {
  editing = server || null;
  const form = $("#server-form");
  form.reset();
  clearErrors(form);
  $("#server-dialog-title").textContent = editing ? `Edit ${editing.name}` : "Add Server";
  $("#save-server").textContent = editing ? "Save" : "Create";
  $("#token-hint").textContent = editing
    ? "Leave empty to keep the current token."
    : "16 to 512 visible characters; the agent's config.env must hold the same.";
  if (editing) {
    for (const f of FIELDS) {
      if (f !== "agent_token") form.elements[f].value = editing[f] ?? "";
    }
    form.querySelectorAll('input[name="roles"]').forEach((c) => { c.checked = editing.roles.includes(c.value); });
    form.elements.active.checked = editing.active;
  }
  $("#server-dialog").showModal();
  form.elements.name.focus();
}

function formBody(form) {
  const body = {};
  for (const f of FIELDS) {
    const v = form.elements[f].value.trim();
    if (f === "agent_token") {
      if (v) body[f] = v;
    } else if (f === "max_accounts") {
      body[f] = v === "" ? null : Number(v);
    } else if (["mail_hostname", "panel_url", "phpmyadmin_path", "roundcube_path"].includes(f)) {
      body[f] = v === "" ? null : v;
    } else {
      body[f] = v;
    }
  }
  body.roles = [...form.querySelectorAll('input[name="roles"]:checked')].map((c) => c.value);
  body.active = form.elements.active.checked;
  return body;
}

$("#add-server").addEventListener("click", () => openForm(null));
$("#cancel-server").addEventListener("click", () => $("#server-dialog").close());
$("#single-server").addEventListener("click", () => {
  document.querySelectorAll('#f-roles input[name="roles"]').forEach((c) => { c.checked = true; });
});
$("#generate-token").addEventListener("click", () => {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  $("#f-agent_token").value = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
});
/** Marks every required field left empty at once; `true` when there is none. */
function requiredFilled(form, body) {
  const missing = ["name", "hostname", "agent_url"].filter((f) => !body[f]);
  if (!editing && !body.agent_token) missing.push("agent_token");
  if (body.roles.length === 0) missing.push("roles");
  for (const f of missing) {
    form.querySelector(`.error[data-for="${f}"]`).textContent = f === "roles" ? "Choose at least one role." : "Required.";
    form.querySelector(`[name="${f}"]`)?.setAttribute("aria-invalid", "true");
  }
  if (missing.length) form.querySelector(`[name="${missing[0]}"]`)?.focus();
  return missing.length === 0;
}

$("#server-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  clearErrors(form);
  const body = formBody(form);
  if (!requiredFilled(form, body)) return;
  try {
    if (editing) await api("PATCH", `/servers/${editing.id}`, body);
    else await api("POST", "/servers", body);
    $("#server-dialog").close();
    await refresh();
  } catch (err) {
    showError(form, err, $("#form-error"));
  }
});

// ---- installation script -------------------------------------------------------------------

async function openScript(s) {
  $("#copy-status").textContent = "";
  $("#script-title").textContent = `Installation Script for ${s.name}`;
  try {
    $("#script-text").textContent = await api("GET", `/servers/${s.id}/install-script`);
  } catch (err) {
    $("#script-text").textContent = "";
    $("#copy-status").textContent = err.message;
  }
  $("#script-dialog").showModal();
  $("#copy-script").focus();
}

$("#copy-script").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("#script-text").textContent);
    $("#copy-status").textContent = "Copied.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("#script-text"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("#copy-status").textContent = "Selected: press Ctrl+C to copy.";
  }
});
$("#close-script").addEventListener("click", () => $("#script-dialog").close());

// ---- SSL ----------------------------------------------------------------------------------

function sslSummary(kind, st) {
  const rows = [
    ["Mode", st.mode ? (st.mode === "selfsigned" ? "self-signed (testing only)" : st.mode) : "not set"],
    ["Status", st.status === "not_configured" ? "not configured" : st.status],
    ["Names", st.subject_names.join(", ") || "—"],
    ["Issuer", st.issuer || "—"],
    ["Expires", st.not_after || "—"],
  ];
  if (st.last_error) rows.push(["Last error", st.last_error]);
  return el("section", { class: "ssl-state", "data-kind": kind },
    el("h3", {}, kind === "panel" ? "Panel certificate" : "Mail certificate"),
    el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
}

async function loadSsl() {
  const box = $("#ssl-states");
  try {
    const [panel, mail] = await Promise.all([
      api("GET", `/servers/${sslServer.id}/ssl/panel`),
      api("GET", `/servers/${sslServer.id}/ssl/mail`),
    ]);
    box.replaceChildren(sslSummary("panel", panel), sslSummary("mail", mail));
  } catch (err) {
    box.replaceChildren(el("p", { class: "error" }, err.message));
  }
}

function customFields() {
  const custom = $("#ssl-mode").value === "custom";
  document.querySelectorAll(".custom-only").forEach((n) => { n.hidden = !custom; });
}

async function openSsl(s) {
  sslServer = s;
  $("#ssl-title").textContent = `SSL for ${s.name}`;
  const form = $("#ssl-form");
  form.reset();
  clearErrors(form);
  customFields();
  $("#ssl-dialog").showModal();
  await loadSsl();
}

$("#ssl-mode").addEventListener("change", customFields);
$("#close-ssl").addEventListener("click", () => $("#ssl-dialog").close());
$("#ssl-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  clearErrors(form);
  const body = { mode: form.elements.mode.value };
  if (body.mode === "custom") {
    // An empty box is not sent: the API then says which one is required.
    for (const f of ["certificate_pem", "private_key_pem"]) {
      if (form.elements[f].value.trim()) body[f] = form.elements[f].value;
    }
  }
  try {
    await api("PUT", `/servers/${sslServer.id}/ssl/${form.elements.kind.value}`, body);
    await loadSsl();
  } catch (err) {
    showError(form, err, $("#ssl-error"));
  }
});

// ---- accounts -----------------------------------------------------------------------------

const PIN_ROLES = ["web", "mail", "db", "backup"];

// The accounts shown: the pages loaded so far (100 accounts each) of those matching the search.
let accountSearch = "";
let accountPages = 1;

async function refreshAccounts() {
  try {
    const query = accountSearch ? `&q=${encodeURIComponent(accountSearch)}` : "";
    const [page, serverList] = await Promise.all([
      apiPages(`/accounts?limit=100${query}`, accountPages),
      apiPages("/servers?limit=1000"),
    ]);
    $("#accounts-load-error").textContent = "";
    $("#more-accounts").hidden = !page.more;
    const seen = JSON.stringify([page.items, serverList.items]);
    if (seen === shownAccounts) return;
    accounts = page.items;
    servers = serverList.items;
    shownAccounts = seen;
    renderAccounts();
  } catch (err) {
    if (err.status === 401) return;
    $("#accounts-load-error").textContent = err.field === "q"
      ? `The search ${err.message.replace(/^q /, "")}.` : `Cannot load the accounts: ${err.message}`;
  }
}

let searchTimer = null;
$("#account-search").addEventListener("input", (e) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    accountSearch = e.target.value.trim();
    accountPages = 1;
    refreshAccounts();
  }, 250);
});
$("#more-accounts").addEventListener("click", () => {
  accountPages += 1;
  refreshAccounts();
});

function serverName(id) {
  return servers.find((s) => s.id === id)?.name || `server ${id}`;
}

function renderAccounts() {
  const body = $("#account-table tbody");
  const rows = accounts.map((a) => {
    const on = (role) => {
      const where = a.servers[role];
      if (where == null) return "—";
      return Array.isArray(where) ? where.map(serverName).join(", ") : serverName(where);
    };
    const td = (label, content) => el("td", { "data-label": label }, content);
    const actions = el("td", { class: "row-actions actions-col", "data-label": "" });
    if (a.servers.mail != null) actions.append(iconButton(`Mail of ${a.username}`, "mail", () => openMail(a)));
    if (a.servers.dns != null) actions.append(iconButton(`DNS of ${a.username}`, "dns", () => openDns(a)));
    if (a.servers.db != null) actions.append(iconButton(`Databases of ${a.username}`, "db", () => openDb(a)));
    if (a.servers.backup != null) actions.append(iconButton(`Backups of ${a.username}`, "backup", () => openBackups(a)));
    if (a.servers.web != null) actions.append(needs("accounts", iconButton(`Migrate ${a.username}`, "move", () => openMigrate(a))));
    actions.append(needs("accounts", iconButton(`Delete ${a.username}`, "trash", () => removeAccount(a))));
    return el("tr", { "data-account": String(a.id), "data-name": a.username },
      td("User Name", a.username),
      td("Domains", a.domains.join(", ")),
      td("Status", el("span", { class: `status ${a.status}` }, a.status)),
      td("Web", on("web")), td("Mail", on("mail")), td("DNS", on("dns")),
      td("DB", on("db")), td("Backup", on("backup")),
      actions);
  });
  replaceRows(body, rows);
  $("#no-accounts").hidden = accounts.length > 0;
  $("#no-accounts").textContent = accountSearch ? "No account matches the search." : "No accounts yet.";
}

async function removeAccount(a) {
  if (!confirm(`Delete the account ${a.username} on every server it uses?`)) return;
  try {
    const kept = await api("DELETE", `/accounts/${a.id}`);
    // Its databases stay on the db server until a final backup: say so.
    $("#accounts-error").textContent = kept?.databases?.length
      ? `${a.username} is deleted; kept on its db server: ${kept.databases.join(", ")}. ${kept.message}`
      : "";
    await refreshAccounts();
  } catch (err) {
    $("#accounts-error").textContent = `Cannot delete ${a.username}: ${err.message}`;
  }
}

/** The pin selects offer "automatic" and the servers that have the role. */
function fillPins() {
  for (const role of PIN_ROLES) {
    const select = $(`#a-pin-${role}`);
    select.replaceChildren(el("option", { value: "" }, "Automatic"),
      ...servers.filter((s) => s.roles.includes(role)).map((s) => el("option", { value: String(s.id) }, s.name)));
  }
  showPins();
}

/** A pin is offered only for a role the account uses. */
function showPins() {
  const roles = [...document.querySelectorAll('#a-roles input[name="roles"]:checked')].map((c) => c.value);
  document.querySelectorAll(".pin").forEach((p) => { p.hidden = !roles.includes(p.dataset.role); });
}

function openAccountForm() {
  const form = $("#account-form");
  form.reset();
  clearErrors(form);
  fillPins();
  $("#account-dialog").showModal();
  form.elements.username.focus();
}

$("#add-account").addEventListener("click", openAccountForm);
$("#cancel-account").addEventListener("click", () => $("#account-dialog").close());
$("#a-roles").addEventListener("change", showPins);
$("#account-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  clearErrors(form);
  const body = {
    username: form.elements.username.value.trim(),
    domains: form.elements.domains.value.split(/[\s,]+/).filter(Boolean),
    roles: [...form.querySelectorAll('input[name="roles"]:checked')].map((c) => c.value),
  };
  const php = form.elements.php_version.value.trim();
  if (php) body.php_version = php;
  const pins = {};
  for (const role of PIN_ROLES) {
    const v = form.elements[`servers.${role}`].value;
    if (v && body.roles.includes(role)) pins[role] = Number(v);
  }
  if (Object.keys(pins).length) body.servers = pins;
  try {
    await api("POST", "/accounts", body);
    $("#account-dialog").close();
    await refreshAccounts();
  } catch (err) {
    showError(form, err, $("#account-form-error"));
  }
});

// ---- mail of an account ---------------------------------------------------------------------

let mailAccount = null;
let changingMailbox = null; // the address being changed, or null when adding
let changingAlias = null;

const addresses = (text) => text.split(/[\s,]+/).filter(Boolean);
const mailPath = (rest) => `/accounts/${mailAccount.id}${rest}`;

/** The Roundcube address of the account's mail server, or null when it serves none. */
function webmailUrl(address) {
  const server = servers.find((s) => s.id === mailAccount.servers.mail);
  if (!server?.roundcube_path) return null;
  return `https://${server.hostname}${server.roundcube_path}/?_user=${encodeURIComponent(address)}`;
}

async function openMail(a) {
  mailAccount = a;
  $("#mail-title").textContent = `Mail of ${a.username}`;
  resetMailboxForm();
  resetAliasForm();
  $("#mail-dialog").showModal();
  await loadMail();
  $("#mb-address").focus();
}

async function loadMail() {
  try {
    const [boxes, aliases] = await Promise.all([api("GET", mailPath("/mailboxes")), api("GET", mailPath("/mail-aliases"))]);
    $("#mail-error").textContent = "";
    renderMailboxes(boxes);
    renderAliases(aliases);
  } catch (err) {
    $("#mail-error").textContent = `Cannot load the mail: ${err.message}`;
  }
  try {
    const records = await api("GET", mailPath("/dkim"));
    $("#dkim-list").replaceChildren(...records.map((r) => el("li", { "data-domain": r.domain },
      el("strong", {}, r.name), el("code", {}, r.value))));
  } catch (err) {
    $("#dkim-list").replaceChildren(el("li", {}, `Cannot load the DKIM records: ${err.message}`));
  }
}

function renderMailboxes(boxes) {
  const td = (label, content) => el("td", { "data-label": label }, content);
  replaceRows($("#mailbox-table tbody"), boxes.map((m) => {
    const url = webmailUrl(m.address);
    const actions = el("td", { class: "row-actions actions-col", "data-label": "" },
      needs("accounts", iconButton(`Change ${m.address}`, "edit", () => startMailboxChange(m))),
      needs("accounts", iconButton(`Delete ${m.address}`, "trash", () => removeMailbox(m))));
    return el("tr", { "data-address": m.address },
      td("Address", m.address),
      td("Quota", m.quota_mb == null ? "default" : `${m.quota_mb} MB`),
      td("Used", m.used_mb == null ? "—" : `${m.used_mb} MB`),
      td("Webmail", url ? el("a", { href: url, target: "_blank", rel: "noopener" }, "Open") : "—"),
      actions);
  }));
  $("#no-mailboxes").hidden = boxes.length > 0;
}

function renderAliases(aliases) {
  const td = (label, content) => el("td", { "data-label": label }, content);
  replaceRows($("#alias-table tbody"), aliases.map((a) => el("tr", { "data-address": a.address },
    td("Address", a.address),
    td("Destinations", a.destinations.join(", ")),
    el("td", { class: "row-actions actions-col", "data-label": "" },
      needs("accounts", iconButton(`Change alias ${a.address}`, "edit", () => startAliasChange(a))),
      needs("accounts", iconButton(`Delete alias ${a.address}`, "trash", () => removeAlias(a)))))));
  $("#no-aliases").hidden = aliases.length > 0;
}

function resetMailboxForm() {
  const form = $("#mailbox-form");
  form.reset();
  clearErrors(form);
  changingMailbox = null;
  form.elements.address.disabled = false;
  $("#mailbox-form-title").textContent = "Add Mailbox";
  $("#save-mailbox").textContent = "Add Mailbox";
  $("#mb-password-hint").textContent = "8 to 1,024 characters. Only its hash is kept.";
  $("#cancel-mailbox").hidden = true;
}

function startMailboxChange(m) {
  resetMailboxForm();
  const form = $("#mailbox-form");
  changingMailbox = m.address;
  form.elements.address.value = m.address;
  form.elements.address.disabled = true;
  form.elements.quota_mb.value = m.quota_mb ?? "";
  $("#mailbox-form-title").textContent = `Change ${m.address}`;
  $("#save-mailbox").textContent = "Save";
  $("#mb-password-hint").textContent = "Leave empty to keep the password.";
  $("#cancel-mailbox").hidden = false;
  form.elements.password.focus();
}

$("#cancel-mailbox").addEventListener("click", resetMailboxForm);
$("#mailbox-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  clearErrors(form);
  const password = form.elements.password.value;
  const quota = form.elements.quota_mb.value.trim();
  const quotaMb = quota === "" ? null : Number(quota);
  try {
    if (changingMailbox) {
      const body = { quota_mb: quotaMb };
      if (password) body.password = password;
      await api("PATCH", mailPath(`/mailboxes/${encodeURIComponent(changingMailbox)}`), body);
    } else {
      await api("POST", mailPath("/mailboxes"), { address: form.elements.address.value.trim(), password, quota_mb: quotaMb });
    }
    resetMailboxForm();
    await loadMail();
  } catch (err) {
    showError(form, err, $("#mailbox-form-error"));
  }
});

async function removeMailbox(m) {
  if (!confirm(`Delete the mailbox ${m.address}? Its stored mail is kept aside on the mail server.`)) return;
  try {
    await api("DELETE", mailPath(`/mailboxes/${encodeURIComponent(m.address)}`));
    if (changingMailbox === m.address) resetMailboxForm();
    await loadMail();
  } catch (err) {
    $("#mail-error").textContent = `Cannot delete ${m.address}: ${err.message}`;
  }
}

function resetAliasForm() {
  const form = $("#alias-form");
  form.reset();
  clearErrors(form);
  changingAlias = null;
  form.elements.address.disabled = false;
  $("#alias-form-title").textContent = "Add Alias";
  $("#save-alias").textContent = "Add Alias";
  $("#cancel-alias").hidden = true;
}

function startAliasChange(a) {
  resetAliasForm();
  const form = $("#alias-form");
  changingAlias = a.address;
  form.elements.address.value = a.address;
  form.elements.address.disabled = true;
  form.elements.destinations.value = a.destinations.join(", ");
  $("#alias-form-title").textContent = `Change ${a.address}`;
  $("#save-alias").textContent = "Save";
  $("#cancel-alias").hidden = false;
  form.elements.destinations.focus();
}

$("#cancel-alias").addEventListener("click", resetAliasForm);
$("#alias-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  clearErrors(form);
  const destinations = addresses(form.elements.destinations.value);
  try {
    if (changingAlias) {
      await api("PUT", mailPath(`/mail-aliases/${encodeURIComponent(changingAlias)}`), { destinations });
    } else {
      await api("POST", mailPath("/mail-aliases"), { address: form.elements.address.value.trim(), destinations });
    }
    resetAliasForm();
    await loadMail();
  } catch (err) {
    showError(form, err, $("#alias-form-error"));
  }
});

async function removeAlias(a) {
  if (!confirm(`Delete the alias ${a.address}?`)) return;
  try {
    await api("DELETE", mailPath(`/mail-aliases/${encodeURIComponent(a.address)}`));
    if (changingAlias === a.address) resetAliasForm();
    await loadMail();
  } catch (err) {
    $("#mail-error").textContent = `Cannot delete the alias ${a.address}: ${err.message}`;
  }
}

$("#close-mail").addEventListener("click", () => $("#mail-dialog").close());

// ---- dns of an account ----------------------------------------------------------------------

let dnsAccount = null;
let dnsZone = null; // the zone shown (its last answer)
let changingRecord = null; // the id of the record being changed, or null when adding

const zonePath = (rest = "") =>
  `/accounts/${dnsAccount.id}/dns/zones/${encodeURIComponent($("#dns-zone").value)}${rest}`;

async function openDns(a) {
  dnsAccount = a;
  $("#dns-title").textContent = `DNS of ${a.username}`;
  $("#dns-error").textContent = "";
  resetRecordForm();
  $("#dns-dialog").showModal();
  try {
    const zones = await api("GET", `/accounts/${a.id}/dns/zones`);
    $("#dns-zone").replaceChildren(...zones.map((z) => el("option", { value: z.name }, z.name)));
    await loadZone();
  } catch (err) {
    $("#dns-error").textContent = `Cannot load the zones: ${err.message}`;
  }
}

async function loadZone() {
  if (!$("#dns-zone").value) return;
  try {
    dnsZone = await api("GET", zonePath());
    $("#dns-error").textContent = "";
  } catch (err) {
    $("#dns-error").textContent = `Cannot load the zone: ${err.message}`;
    return;
  }
  const z = dnsZone;
  $("#zone-summary").textContent = `Serial ${z.serial}, served by ${z.servers.map(serverName).join(", ")}: `
    + (z.in_sync ? "every server answers with it." : "not every server answers with it yet.");
  $("#toggle-dnssec").textContent = z.dnssec ? "Stop signing" : "Sign with DNSSEC";
  $("#ds-box").hidden = !z.dnssec;
  $("#ds-list").replaceChildren(...z.ds.map((d) => el("li", {}, el("code", {}, d))));
  const td = (label, content) => el("td", { "data-label": label }, content);
  replaceRows($("#record-table tbody"), z.records.map((r) => {
    const actions = el("td", { class: "row-actions actions-col", "data-label": "" });
    if (!r.managed) {
      actions.append(needs("accounts", iconButton(`Change record ${r.name} ${r.type}`, "edit", () => startRecordChange(r))),
        needs("accounts", iconButton(`Delete record ${r.name} ${r.type}`, "trash", () => removeRecord(r))));
    }
    return el("tr", { "data-record": String(r.id), "data-managed": String(r.managed) },
      td("Name", r.name), td("Type", r.type), td("TTL", String(r.ttl)),
      td("Content", el("code", {}, r.priority == null ? r.content : `${r.priority} ${r.content}`)),
      td("Made by", r.managed ? "enconf" : "account"), actions);
  }));
}

function resetRecordForm() {
  const form = $("#record-form");
  form.reset();
  clearErrors(form);
  changingRecord = null;
  $("#record-form-title").textContent = "Add Record";
  $("#save-record").textContent = "Add Record";
  $("#cancel-record").hidden = true;
}

function startRecordChange(r) {
  resetRecordForm();
  const form = $("#record-form");
  changingRecord = r.id;
  form.elements.name.value = r.name;
  form.elements.type.value = r.type;
  form.elements.ttl.value = String(r.ttl);
  form.elements.priority.value = r.priority == null ? "" : String(r.priority);
  form.elements.content.value = r.content;
  $("#record-form-title").textContent = `Change ${r.name} ${r.type}`;
  $("#save-record").textContent = "Save";
  $("#cancel-record").hidden = false;
  form.elements.content.focus();
}

async function removeRecord(r) {
  if (!confirm(`Delete the record ${r.name} ${r.type} ${r.content}?`)) return;
  try {
    await api("DELETE", zonePath(`/records/${r.id}`));
    if (changingRecord === r.id) resetRecordForm();
    await loadZone();
  } catch (err) {
    $("#dns-error").textContent = `Cannot delete the record: ${err.message}`;
  }
}

$("#dns-zone").addEventListener("change", () => { resetRecordForm(); loadZone(); });
$("#cancel-record").addEventListener("click", resetRecordForm);
$("#record-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  clearErrors(form);
  const number = (v) => (v.trim() === "" ? null : Number(v));
  const body = {
    name: form.elements.name.value.trim(),
    type: form.elements.type.value,
    ttl: number(form.elements.ttl.value),
    content: form.elements.content.value,
    priority: number(form.elements.priority.value),
  };
  try {
    if (changingRecord != null) {
      await api("PUT", zonePath(`/records/${changingRecord}`), body);
    } else {
      await api("POST", zonePath("/records"), body);
    }
    resetRecordForm();
    await loadZone();
  } catch (err) {
    showError(form, err, $("#record-form-error"));
  }
});

$("#toggle-dnssec").addEventListener("click", async () => {
  if (!dnsZone) return;
  try {
    await api("PATCH", zonePath(), { dnssec: !dnsZone.dnssec });
    await loadZone();
  } catch (err) {
    $("#dns-error").textContent = `Cannot change the signing: ${err.message}`;
  }
});

$("#close-dns").addEventListener("click", () => $("#dns-dialog").close());

let migrating = null;

const MOVABLE = ["web", "mail", "db"];

function openMigrate(a) {
  migrating = a;
  const form = $("#migrate-form");
  form.reset();
  clearErrors(form);
  $("#migrate-title").textContent = `Migrate ${a.username}`;
  let first = null;
  for (const role of MOVABLE) {
    const field = form.querySelector(`.field[data-role="${role}"]`);
    const current = a.servers[role];
    field.hidden = current == null;
    if (current == null) continue;
    const here = servers.find((s) => s.id === current);
    const select = form.elements[`targets.${role}`];
    select.replaceChildren(
      el("option", { value: "" }, `Stays on ${here ? here.name : `server ${current}`}`),
      ...servers.filter((s) => s.id !== current)
        .map((s) => el("option", { value: String(s.id) }, `${s.name} (${s.roles.join(", ")})`)));
    first = first || select;
  }
  $("#migrate-dialog").showModal();
  if (first) first.focus();
}

$("#cancel-migrate").addEventListener("click", () => $("#migrate-dialog").close());
$("#migrate-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  clearErrors(form);
  const targets = {};
  for (const role of MOVABLE) {
    const select = form.elements[`targets.${role}`];
    if (migrating.servers[role] != null && select.value) targets[role] = Number(select.value);
  }
  if (Object.keys(targets).length === 0) {
    $("#migrate-error").textContent = "Choose a new server for at least one role.";
    return;
  }
  try {
    const job = await api("POST", `/accounts/${migrating.id}/migrate`, { targets });
    $("#migrate-dialog").close();
    followMigration(migrating.username, job);
  } catch (err) {
    showError(form, err, $("#migrate-error"));
  }
});

/** Follows a migration job: its progress bar in the status line, then the table, or the reason. */
async function followMigration(user, job) {
  const status = $("#accounts-job");
  $("#accounts-error").textContent = "";
  for (;;) {
    const p = job.progress;
    const bar = el("progress", { max: String(p?.total || 1), value: String(p?.done || 0),
      "aria-label": `Progress of the migration of ${user}` });
    status.replaceChildren(`Migrating ${user}: ${job.status} `, bar,
      p && p.total ? ` ${formatBytes(p.done)} of ${formatBytes(p.total)}` : "");
    if (job.status === "succeeded" || job.status === "failed") break;
    await new Promise((r) => setTimeout(r, 1000));
    try {
      job = await api("GET", `/jobs/${job.id}`);
    } catch (err) {
      status.textContent = "";
      $("#accounts-error").textContent = `Cannot follow the migration of ${user}: ${err.message}`;
      return;
    }
  }
  status.textContent = job.status === "succeeded" ? `${user} is migrated.` : "";
  if (job.status === "failed") $("#accounts-error").textContent = `The migration of ${user} failed; it stays where it was: ${job.error}`;
  await refreshAccounts();
}

show();

// ---- databases of an account ------------------------------------------------------------------

let dbAccount = null;
let dbNames = []; // the account's databases, for the user form's checkboxes
let changingDbUser = null; // the user being changed, or null when adding
const dbPath = (rest) => `/accounts/${dbAccount.id}${rest}`;

function formatBytes(n) {
  if (n == null) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

async function openDb(a) {
  dbAccount = a;
  $("#db-title").textContent = `Databases of ${a.username}`;
  $("#db-name-hint").replaceChildren("Lowercase letters, digits and ", el("code", {}, "_"),
    "; the prefix ", el("code", {}, `${a.username}_`), " is added.");
  $("#database-form").reset();
  clearErrors($("#database-form"));
  resetDbUserForm();
  $("#db-dialog").showModal();
  await loadDb();
  $("#db-name").focus();
}

async function loadDb() {
  try {
    const [dbs, users] = await Promise.all([api("GET", dbPath("/databases")), api("GET", dbPath("/database-users"))]);
    $("#db-error").textContent = "";
    dbNames = dbs.map((d) => d.name);
    renderDatabases(dbs);
    renderDbUsers(users);
    renderDbChoices(changingDbUser?.databases ?? []);
  } catch (err) {
    $("#db-error").textContent = `Cannot load the databases: ${err.message}`;
  }
}

function renderDatabases(dbs) {
  const td = (label, content) => el("td", { "data-label": label }, content);
  replaceRows($("#database-table tbody"), dbs.map((d) => el("tr", { "data-database": d.name },
    td("Name", d.name),
    td("Size", formatBytes(d.size_bytes)),
    el("td", { class: "row-actions actions-col", "data-label": "" },
      needs("accounts", iconButton(`Delete database ${d.name}`, "trash", () => removeDatabase(d)))))));
  $("#no-databases").hidden = dbs.length > 0;
}

function renderDbUsers(users) {
  const td = (label, content) => el("td", { "data-label": label }, content);
  replaceRows($("#db-user-table tbody"), users.map((u) => el("tr", { "data-db-user": u.name },
    td("Name", u.name),
    td("Databases", u.databases.length ? u.databases.join(", ") : "—"),
    td("Connects from", u.hosts.join(", ")),
    td("phpMyAdmin", u.phpmyadmin_url ? el("a", { href: u.phpmyadmin_url, target: "_blank", rel: "noopener" }, "Open") : "—"),
    el("td", { class: "row-actions actions-col", "data-label": "" },
      needs("accounts", iconButton(`Change database user ${u.name}`, "edit", () => startDbUserChange(u))),
      needs("accounts", iconButton(`Delete database user ${u.name}`, "trash", () => removeDbUser(u)))))));
  $("#no-db-users").hidden = users.length > 0;
}

/** One checkbox per database of the account, `checked` ticked. */
function renderDbChoices(checked) {
  const box = $("#dbu-databases");
  const error = box.querySelector(".error");
  const choices = dbNames.map((name) => el("label", {},
    el("input", Object.assign({ type: "checkbox", name: "databases", value: name }, checked.includes(name) ? { checked: "" } : {})),
    ` ${name}`));
  box.replaceChildren(el("legend", {}, "All privileges on"),
    ...(choices.length ? choices : [el("p", { class: "hint" }, "Add a database first, or grant later.")]), error);
}

function resetDbUserForm() {
  const form = $("#db-user-form");
  form.reset();
  clearErrors(form);
  changingDbUser = null;
  form.elements.name.disabled = false;
  $("#db-user-form-title").textContent = "Add Database User";
  $("#save-db-user").textContent = "Add Database User";
  $("#dbu-password-hint").textContent = "8 to 1,024 characters. Only its hash is kept.";
  $("#cancel-db-user").hidden = true;
  renderDbChoices([]);
}

function startDbUserChange(u) {
  resetDbUserForm();
  const form = $("#db-user-form");
  changingDbUser = u;
  form.elements.name.value = u.name;
  form.elements.name.disabled = true;
  renderDbChoices(u.databases);
  $("#db-user-form-title").textContent = `Change ${u.name}`;
  $("#save-db-user").textContent = "Save";
  $("#dbu-password-hint").textContent = "Leave empty to keep the password.";
  $("#cancel-db-user").hidden = false;
  form.elements.password.focus();
}

$("#database-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  clearErrors(form);
  try {
    await api("POST", dbPath("/databases"), { name: form.elements.name.value.trim() });
    form.reset();
    await loadDb();
  } catch (err) {
    showError(form, err, $("#database-form-error"));
  }
});

async function removeDatabase(d) {
  if (!confirm(`Delete the database ${d.name} and all its data?`)) return;
  try {
    await api("DELETE", dbPath(`/databases/${encodeURIComponent(d.name)}`));
    await loadDb();
  } catch (err) {
    $("#db-error").textContent = `Cannot delete ${d.name}: ${err.message}`;
  }
}

$("#cancel-db-user").addEventListener("click", resetDbUserForm);
$("#db-user-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  clearErrors(form);
  const password = form.elements.password.value;
  const databases = [...form.querySelectorAll('input[name="databases"]:checked')].map((c) => c.value);
  try {
    if (changingDbUser) {
      const body = { databases };
      if (password) body.password = password;
      await api("PATCH", dbPath(`/database-users/${encodeURIComponent(changingDbUser.name)}`), body);
    } else {
      await api("POST", dbPath("/database-users"), { name: form.elements.name.value.trim(), password, databases });
    }
    resetDbUserForm();
    await loadDb();
  } catch (err) {
    showError(form, err, $("#db-user-form-error"));
  }
});

async function removeDbUser(u) {
  if (!confirm(`Delete the database user ${u.name}? Its open sessions end at once.`)) return;
  try {
    await api("DELETE", dbPath(`/database-users/${encodeURIComponent(u.name)}`));
    if (changingDbUser?.name === u.name) resetDbUserForm();
    await loadDb();
  } catch (err) {
    $("#db-error").textContent = `Cannot delete ${u.name}: ${err.message}`;
  }
}

$("#close-db").addEventListener("click", () => $("#db-dialog").close());

// Backups: the account's jobs with their progress, its snapshots, a backup now, a restore.
let backupAccount = null;
let restoring = null; // the snapshot the restore form is for
let backupTimer = null;
const backupPath = (rest) => `/accounts/${backupAccount.id}${rest}`;

async function openBackups(a) {
  backupAccount = a;
  $("#backup-title").textContent = `Backups of ${a.username}`;
  $("#backup-error").textContent = "";
  closeRestore();
  $("#backup-dialog").showModal();
  await loadBackups();
}

function when(t) {
  return t ? new Date(t).toLocaleString() : "—";
}

async function loadBackups() {
  clearTimeout(backupTimer);
  if (!backupAccount || !$("#backup-dialog").open) return;
  try {
    // The account's newest jobs, from the controller's index of them.
    const [mine, snapshots] = await Promise.all([
      api("GET", `/jobs?account_id=${backupAccount.id}&limit=20`), api("GET", backupPath("/backups"))]);
    renderJobs(mine);
    renderSnapshots(snapshots.slice().reverse());
    // Follow the jobs that have not finished; once none runs, a refusal for a busy account
    // no longer holds.
    if (mine.some((j) => j.status === "queued" || j.status === "running")) {
      backupTimer = setTimeout(loadBackups, 1000);
    } else {
      $("#backup-error").textContent = "";
    }
  } catch (err) {
    $("#backup-error").textContent = `Cannot load the backups: ${err.message}`;
  }
}

function renderJobs(jobs) {
  const td = (label, content) => el("td", { "data-label": label }, content);
  replaceRows($("#job-table tbody"), jobs.map((j) => {
    const p = j.progress;
    // A finished job's bar is full, also when there was nothing to read.
    const finished = j.status === "succeeded";
    const bar = el("progress", { max: String(p?.total || 1),
      value: String(finished ? (p?.total || 1) : (p?.done || 0)),
      "aria-label": `Progress of job ${j.id}` });
    const figures = p ? `${formatBytes(p.done)} of ${formatBytes(p.total)}, ${p.files_done} of ${p.files_total} files` : "";
    const kind = j.kind === "restore" ? `restore of ${j.snapshot} (${j.what.join(", ")})` : j.kind;
    return el("tr", { "data-job": String(j.id), "data-status": j.status },
      td("Job", `#${j.id} ${kind}`),
      td("Status", el("span", { class: `status ${j.status}` }, j.status)),
      td("Progress", el("span", { class: "progress" }, bar, " ", figures)),
      td("Started", when(j.started_at)),
      td("Outcome", j.error || (j.status === "succeeded" ? `done ${when(j.finished_at)}` : "—")));
  }));
  $("#no-jobs").hidden = jobs.length > 0;
}

function renderSnapshots(snapshots) {
  const td = (label, content) => el("td", { "data-label": label }, content);
  replaceRows($("#snapshot-table tbody"), snapshots.map((s) => el("tr", { "data-snapshot": s.id },
    td("Time", when(s.time)),
    td("Size", formatBytes(s.size_bytes)),
    td("Holds", [...s.contents, ...s.databases.map((d) => `(${d})`)].join(", ")),
    el("td", { class: "row-actions actions-col", "data-label": "" },
      el("button", { type: "button", class: "secondary", "data-needs": "accounts", onclick: () => openRestore(s) },
        `Restore ${when(s.time)}`)))));
  $("#no-snapshots").hidden = snapshots.length > 0;
}

function openRestore(s) {
  restoring = s;
  const form = $("#restore-form");
  form.reset();
  clearErrors(form);
  for (const box of form.querySelectorAll('input[name="what"]')) {
    box.disabled = !s.contents.includes(box.value);
    box.checked = !box.disabled;
  }
  $("#restore-title").textContent = `Restore from ${when(s.time)}`;
  form.hidden = false;
  form.querySelector('input[name="what"]:not(:disabled)')?.focus();
}

function closeRestore() {
  restoring = null;
  $("#restore-form").hidden = true;
}

$("#start-backup").addEventListener("click", async () => {
  $("#backup-error").textContent = "";
  try {
    await api("POST", backupPath("/backups"));
    await loadBackups();
  } catch (err) {
    $("#backup-error").textContent = err.message;
  }
});

$("#cancel-restore").addEventListener("click", closeRestore);
$("#restore-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  clearErrors(form);
  const what = [...form.querySelectorAll('input[name="what"]:checked')].map((c) => c.value);
  if (!what.length) {
    showError(form, { field: "what", message: "Choose what to put back." }, $("#restore-form-error"));
    return;
  }
  try {
    await api("POST", backupPath(`/backups/${encodeURIComponent(restoring.id)}/restore`), { what });
    closeRestore();
    await loadBackups();
  } catch (err) {
    showError(form, err, $("#restore-form-error"));
  }
});

$("#close-backup").addEventListener("click", () => {
  clearTimeout(backupTimer);
  $("#backup-dialog").close();
});


// ---- administrators (owners) ----------------------------------------------------------------

async function refreshAdmins() {
  try {
    const list = await api("GET", "/admins");
    $("#admins-error").textContent = "";
    const me = session();
    const td = (label, content) => el("td", { "data-label": label }, content);
    replaceRows($("#admin-table tbody"), list.map((a) => {
      const role = el("select", { "aria-label": `Role of ${a.name}` },
        ...["owner", "admin", "operator", "viewer"].map((r) => {
          const o = el("option", { value: r }, r);
          if (r === a.role) o.selected = true;
          return o;
        }));
      role.addEventListener("change", () => changeRole(a, role.value));
      return el("tr", { "data-admin": String(a.id) },
        td("Name", me && me.id === a.id ? `${a.name} (you)` : a.name),
        td("Role", role),
        td("Added", new Date(a.created_at).toLocaleString()),
        el("td", { class: "row-actions actions-col", "data-label": "" },
          iconButton(`Remove ${a.name}`, "trash", () => removeAdmin(a))));
    }));
    $("#no-admins").hidden = list.length > 0;
  } catch (err) {
    if (err.status !== 401) $("#admins-error").textContent = `Cannot load the administrators: ${err.message}`;
  }
}

async function changeRole(a, role) {
  try {
    await api("PATCH", `/admins/${a.id}`, { role });
  } catch (err) {
    $("#admins-error").textContent = `The role of ${a.name} was not changed: ${err.message}`;
  }
  refreshAdmins();
}

async function removeAdmin(a) {
  if (!confirm(`Remove ${a.name}? Their token stops working at once.`)) return;
  try {
    await api("DELETE", `/admins/${a.id}`);
  } catch (err) {
    $("#admins-error").textContent = `${a.name} was not removed: ${err.message}`;
  }
  refreshAdmins();
}

$("#admin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  clearErrors(form);
  const body = { name: form.elements.name.value.trim(), role: form.elements.role.value };
  try {
    const made = await api("POST", "/admins", body);
    form.reset();
    $("#new-admin-name").textContent = made.name;
    $("#new-admin-secret").textContent = made.token;
    $("#new-admin-token").hidden = false;
    refreshAdmins();
  } catch (err) {
    showError(form, err, $("#admin-form-error"));
  }
});
$("#hide-admin-token").addEventListener("click", () => {
  $("#new-admin-secret").textContent = "";
  $("#new-admin-token").hidden = true;
});

// ---- the audit log (owners and admins) -------------------------------------------------------


function auditQuery() {
  const q = new URLSearchParams({ limit: "100" });
  const object = $("#audit-object").value.trim();
  const admin = $("#audit-admin").value.trim();
  if (object) q.set("object", object);
  if (admin) q.set("admin", admin);
  return `/audit?${q}`;
}

function auditRows(entries) {
  const td = (label, content) => el("td", { "data-label": label }, content);
  return entries.map((e) => el("tr", { "data-entry": String(e.id) },
    td("Time", new Date(e.time).toLocaleString()),
    td("Administrator", `${e.admin_name} (${e.admin})`),
    td("Action", e.action),
    td("Object", e.object || "—"),
    td("Changes", el("span", { class: "mono" }, Object.entries(e.changes).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(", ") || "—")),
    td("Result", e.result === "ok" ? "ok" : `${e.result} (${e.status})`)));
}

async function loadAudit(more = false) {
  try {
    const page = await request("GET", more ? auditNext : auditQuery());
    $("#audit-error").textContent = "";
    const body = $("#audit-table tbody");
    if (more) body.append(...auditRows(page.data));
    else replaceRows(body, auditRows(page.data));
    auditNext = page.next;
    $("#more-audit").hidden = !auditNext;
    $("#no-audit").hidden = body.children.length > 0;
  } catch (err) {
    if (err.status !== 401) $("#audit-error").textContent = `Cannot load the audit log: ${err.message}`;
  }
}

$("#audit-filter").addEventListener("submit", (e) => { e.preventDefault(); loadAudit(); });
$("#more-audit").addEventListener("click", () => loadAudit(true));
