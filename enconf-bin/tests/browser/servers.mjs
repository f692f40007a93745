// Settings > Servers in headless Chromium, driven by playwright-core. Started by
// enconf-bin/tests/browser.rs, which runs the controller and a sandbox agent and passes:
// BASE_URL, ADMIN_TOKEN, AGENT_URL, AGENT_TOKEN, AGENT_PID, SCREENSHOTS.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env("BASE_URL");
const SHOTS = env("SCREENSHOTS");
const step = (s) => console.log(`step: ${s}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
  page.setDefaultTimeout(20000);

  step("login; the page loads without a missing file (the favicon included)");
  const missingFiles = [];
  page.on("response", (r) => { if (r.status() === 404) missingFiles.push(r.url()); });
  await page.goto(`${BASE}/?refresh=500`);
  const icon = await page.request.get(`${BASE}/favicon.ico`);
  assert.equal(icon.status(), 200);
  assert.match(icon.headers()["content-type"], /image\/svg\+xml/);
  await page.getByLabel("Admin token").fill("not-the-admin-token-0123");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByText("That token is not an administrator's.").waitFor();
  await page.getByLabel("Admin token").fill(env("ADMIN_TOKEN"));
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Servers" }).waitFor();
  assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");

  assert.deepEqual(missingFiles, []);

  step("an empty form shows every missing field at once");
  await page.getByRole("button", { name: "Add Server" }).click();
  await page.getByRole("button", { name: "Create" }).click();
  for (const field of ["name", "hostname", "agent_url", "agent_token", "roles"]) {
    const text = await page.locator(`#server-form .error[data-for="${field}"]`).textContent();
    assert.ok(text.length > 0, `no error beside ${field}`);
  }
  assert.equal(await page.getByLabel("Name", { exact: true }).getAttribute("aria-invalid"), "true");
  await page.screenshot({ path: `${SHOTS}/add-server-form-empty.png` });
  await page.getByRole("button", { name: "Cancel" }).click();

  step("add a server through the form, with the keyboard");
  await page.getByRole("button", { name: "Add Server" }).focus();
  await page.keyboard.press("Enter");
  const dialog = page.locator("#server-dialog");
  await dialog.waitFor();
  await page.getByRole("button", { name: "Generate" }).click();
  assert.match(await page.getByLabel("Agent Token").inputValue(), /^[0-9a-f]{64}$/);
  await page.getByLabel("Name", { exact: true }).fill("Web 1");
  await page.getByLabel("Hostname", { exact: true }).fill("web1.example.com");
  await page.getByLabel("Mail Hostname").fill("mail.example.com");
  await page.getByLabel("Agent URL").fill(env("AGENT_URL"));
  await page.getByLabel("Agent Token").fill(env("AGENT_TOKEN"));
  await page.getByRole("button", { name: "Single server (all roles)" }).click();
  for (const role of ["web", "mail", "dns", "db", "backup"]) {
    assert.ok(await dialog.getByLabel(role, { exact: true }).isChecked(), role);
  }
  await page.getByLabel("Max. Accounts").fill("500");
  await page.getByLabel("phpMyAdmin Path").fill("/phpmyadmin");
  await page.getByRole("button", { name: "Create" }).click();
  await dialog.waitFor({ state: "hidden" });
  const web1 = page.locator('tr[data-name="Web 1"]');
  await web1.locator('[data-reachable="true"]').waitFor();
  assert.equal(await web1.locator("td").nth(3).textContent(), "web, mail, dns, db, backup");
  assert.equal(await web1.locator("td").nth(4).textContent(), "500");
  assert.match(await web1.locator("td").nth(5).textContent(), /^\d+\.\d+\.\d+/);
  // The controller knows a newer agent release (999.0.0) than this agent's.
  assert.equal(await web1.locator('td[data-label="Update"] .badge').textContent(), "Available");

  step("a bad hostname: the error beside the field");
  await page.getByRole("button", { name: "Add Server" }).click();
  await page.getByLabel("Name", { exact: true }).fill("Bad");
  await page.getByLabel("Hostname", { exact: true }).fill("bad host;.example.com");
  await page.getByLabel("Agent URL").fill("http://127.0.0.1:9");
  await page.getByLabel("Agent Token").fill("0123456789abcdef0123");
  await dialog.getByLabel("web", { exact: true }).check();
  await page.getByRole("button", { name: "Create" }).click();
  const hostError = page.locator('.error[data-for="hostname"]');
  await hostError.waitFor();
  assert.match(await hostError.textContent(), /hostname must not contain the character ' '/);
  assert.equal(await page.getByLabel("Hostname", { exact: true }).getAttribute("aria-invalid"), "true");
  await page.screenshot({ path: `${SHOTS}/add-server-form-error.png` });
  await page.getByRole("button", { name: "Cancel" }).click();

  step("an empty second server through the form (its agent does not exist: red)");
  await page.getByRole("button", { name: "Add Server" }).click();
  await page.getByLabel("Name", { exact: true }).fill("Spare");
  await page.getByLabel("Hostname", { exact: true }).fill("spare.example.com");
  await page.getByLabel("Agent URL").fill("http://127.0.0.1:9");
  await page.getByLabel("Agent Token").fill("0123456789abcdef0123");
  await dialog.getByLabel("backup", { exact: true }).check();
  await page.getByRole("button", { name: "Create" }).click();
  const spare = page.locator('tr[data-name="Spare"]');
  await spare.locator('[data-reachable="false"]').waitFor();
  assert.match(await spare.locator(".dot").getAttribute("title"), /unreachable|refused/);
  // Never reached: no version, so nothing is known about an update.
  assert.equal(await spare.locator('td[data-label="Update"]').textContent(), "—");

  step("edit, by keyboard: the focus survives the table's refresh; the token field is empty and kept");
  const focusedLabel = () => page.evaluate(() => document.activeElement?.getAttribute("aria-label"));
  for (let i = 0; i < 40 && (await focusedLabel()) !== "Edit Web 1"; i++) await page.keyboard.press("Tab");
  assert.equal(await focusedLabel(), "Edit Web 1", "Tab reaches the edit button");
  await page.waitForResponse((r) => r.request().method() === "GET" && r.url().endsWith("/api/v1/servers?limit=1000"));
  await page.waitForTimeout(100);
  assert.equal(await focusedLabel(), "Edit Web 1", "the refresh kept the focus");
  await page.keyboard.press("Enter");
  await dialog.waitFor();
  assert.equal(await page.getByLabel("Agent Token").inputValue(), "");
  assert.equal(await page.getByLabel("Name", { exact: true }).inputValue(), "Web 1");
  await page.getByLabel("Max. Accounts").fill("600");
  await page.getByRole("button", { name: "Save" }).click();
  await dialog.waitFor({ state: "hidden" });
  await page.waitForFunction(() => document.querySelector('tr[data-name="Web 1"] td:nth-child(5)')?.textContent === "600");
  await web1.locator('[data-reachable="true"]').waitFor();
  await page.screenshot({ path: `${SHOTS}/server-table.png` });

  step("installation script, by keyboard");
  await page.getByRole("button", { name: "Installation script for Web 1" }).focus();
  await page.keyboard.press("Enter");
  const script = page.locator("#script-text");
  await page.waitForFunction(() => document.querySelector("#script-text").textContent.startsWith("#!/bin/sh"));
  assert.match(await script.textContent(), /systemctl enable --now netcell-webpanel-agent/);
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  await page.getByRole("button", { name: "Copy" }).click();
  await page.locator("#copy-status").filter({ hasText: /Copied|Selected/ }).waitFor();
  await page.screenshot({ path: `${SHOTS}/install-script.png` });
  // The table refreshes behind the dialog; Escape closes it and the focus is back on the row.
  await page.waitForResponse((r) => r.request().method() === "GET" && r.url().endsWith("/api/v1/servers?limit=1000"));
  await page.keyboard.press("Escape");
  await page.locator("#script-dialog").waitFor({ state: "hidden" });
  await page.waitForTimeout(50);
  assert.equal(await focusedLabel(), "Installation script for Web 1", "the focus came back to the opener");

  step("SSL: a self-signed panel certificate");
  await page.getByRole("button", { name: "SSL for Web 1" }).click();
  await page.locator('.ssl-state[data-kind="panel"]').waitFor();
  await page.getByLabel("Mode").selectOption("custom");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.locator('.error[data-for="certificate_pem"]').filter({ hasText: "required" }).waitFor();
  await page.getByLabel("Mode").selectOption("selfsigned");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.locator('.ssl-state[data-kind="panel"]').filter({ hasText: "self-signed (testing only)" }).waitFor();
  assert.match(await page.locator('.ssl-state[data-kind="panel"]').textContent(), /active.*web1\.example\.com/s);
  await page.screenshot({ path: `${SHOTS}/ssl.png` });
  await page.locator("#close-ssl").click();

  step("delete: refused while an account is on the server, done for an empty one");
  const res = await page.request.post(`${BASE}/api/v1/accounts`, {
    headers: { Authorization: `Bearer ${env("ADMIN_TOKEN")}` },
    data: { username: "shop", domains: ["shop.example"] },
  });
  assert.equal(res.status(), 201, await res.text());
  page.on("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Delete Web 1" }).click();
  const refusal = page.locator("#servers-error");
  await refusal.filter({ hasText: "cannot be deleted" }).waitFor();
  // The table refreshes by itself: the refusal must outlive the next refresh.
  await page.waitForResponse((r) => r.request().method() === "GET" && r.url().endsWith("/api/v1/servers?limit=1000"));
  await page.waitForTimeout(100);
  assert.match(await refusal.textContent(), /1 account\(s\) \(shop: web\): migrate or delete them first/);
  assert.equal(await web1.count(), 1);
  await page.getByRole("button", { name: "Delete Spare" }).click();
  await spare.waitFor({ state: "detached" });

  step("the agent stops: the indicator turns red without a reload");
  const url = page.url();
  process.kill(Number(env("AGENT_PID")), "SIGTERM");
  await web1.locator('[data-reachable="false"]').waitFor({ timeout: 30000 });
  assert.equal(page.url(), url);
  assert.ok((await web1.locator(".dot").getAttribute("title")).length > 0, "the last error on hover");
  // While nothing changes, refreshes leave the row alone: a tooltip being read stays open.
  // (Compared against what the page was sent: the first rounds after the stop may differ.)
  const listRefresh = async () => (await page.waitForResponse(
    (r) => r.request().method() === "GET" && r.url().endsWith("/api/v1/servers?limit=1000"))).text();
  let before = await listRefresh();
  let unchanged = false;
  for (let i = 0; i < 5 && !unchanged; i++) {
    await page.waitForTimeout(100);
    const dot = await web1.locator(".dot").elementHandle();
    await dot.hover();
    const after = await listRefresh();
    await page.waitForTimeout(100);
    unchanged = after === before;
    if (unchanged) assert.ok(await dot.evaluate((e) => e.isConnected), "an unchanged row was rebuilt");
    before = after;
  }
  assert.ok(unchanged, "the server list kept changing while the agent was stopped");
  await page.screenshot({ path: `${SHOTS}/server-table-offline.png` });

  step("roles: the owner adds a viewer and reads the audit log; the viewer sees no change");
  assert.ok(await page.getByRole("button", { name: "Rotate the token of Web 1" }).isVisible());
  await page.getByRole("link", { name: "Administrators" }).click();
  await page.locator("#ad-name").fill("Vera");
  await page.locator("#ad-role").selectOption("viewer");
  await page.getByRole("button", { name: "Add Administrator" }).click();
  const secret = page.locator("#new-admin-secret");
  await secret.filter({ hasText: /^[0-9a-f]{64}$/ }).waitFor();
  const viewerToken = (await secret.textContent()).trim();
  await page.locator('#admin-table tr[data-admin]').filter({ hasText: "Vera" }).waitFor();
  await page.getByRole("button", { name: "Done" }).click();
  assert.equal(await secret.textContent(), "", "the token is not kept on the page");
  await page.getByRole("link", { name: "Audit Log" }).click();
  await page.locator("#audit-table tr[data-entry]").filter({ hasText: "admin.create" }).first().waitFor();
  await page.locator("#audit-table tr[data-entry]").filter({ hasText: "server.delete" }).first().waitFor();
  assert.ok(!(await page.locator("#audit-table").textContent()).includes(viewerToken), "a token in the audit log");
  await page.screenshot({ path: `${SHOTS}/audit-log.png`, fullPage: true });
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByLabel("Admin token").fill(viewerToken);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Servers" }).waitFor();
  await page.locator("#who").filter({ hasText: "Vera (viewer)" }).waitFor();
  await web1.waitFor();
  for (const name of ["Add Server", "Edit Web 1", "Delete Web 1", "Rotate the token of Web 1", "Installation script for Web 1"]) {
    assert.ok(await page.getByRole("button", { name }).isHidden(), `a viewer sees ${name}`);
  }
  for (const name of ["Administrators", "Audit Log"]) {
    assert.ok(await page.getByRole("link", { name }).isHidden(), `a viewer sees ${name}`);
  }
  await page.screenshot({ path: `${SHOTS}/server-table-viewer.png` });
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByLabel("Admin token").fill(env("ADMIN_TOKEN"));
  await page.keyboard.press("Enter");
  // The address still names the audit log, which an owner may read.
  await page.getByRole("heading", { name: "Audit Log" }).waitFor();
  await page.getByRole("link", { name: "Servers" }).click();
  await page.getByRole("button", { name: "Add Server" }).waitFor();

  step("a narrow screen");
  await page.setViewportSize({ width: 375, height: 800 });
  await page.screenshot({ path: `${SHOTS}/server-table-narrow.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
  await page.getByRole("button", { name: "Add Server" }).click();
  await page.screenshot({ path: `${SHOTS}/add-server-form-narrow.png`, fullPage: true });
  // The form is taller than the screen: it scrolls inside the dialog down to its buttons.
  const create = page.getByRole("button", { name: "Create" });
  await create.scrollIntoViewIfNeeded();
  const box = await create.boundingBox();
  const screen = page.viewportSize().height;
  assert.ok(box && box.y >= 0 && box.y + box.height <= screen, `Create is off screen: ${JSON.stringify(box)}`);
  await page.screenshot({ path: `${SHOTS}/add-server-form-narrow-end.png` });
  await page.getByRole("button", { name: "Cancel" }).click();

  step("every input has a label");
  const unlabeled = await page.evaluate(() => [...document.querySelectorAll("input, select, textarea")]
    .filter((i) => !i.labels?.length && !i.getAttribute("aria-label")).map((i) => i.id || i.name));
  assert.deepEqual(unlabeled, []);
  console.log("browser tests passed");
} finally {
  await browser.close();
}
