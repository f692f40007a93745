// Accounts in headless Chromium, driven by playwright-core. Started by
// enconf-bin/tests/browser.rs, which runs the controller and three sandbox agents and passes:
// BASE_URL, ADMIN_TOKEN, AGENT_URLS (three, space-separated), AGENT_TOKEN, SCREENSHOTS.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env("BASE_URL");
const SHOTS = env("SCREENSHOTS");
const AUTH = { Authorization: `Bearer ${env("ADMIN_TOKEN")}` };
const step = (s) => console.log(`step: ${s}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
  page.setDefaultTimeout(20000);

  step("three servers through the API: web,db / mail,dns / web,backup");
  const [webUrl, mailUrl, web2Url] = env("AGENT_URLS").split(" ");
  const ids = {};
  for (const [name, url, roles] of [["Web 1", webUrl, ["web", "db"]], ["Mail 1", mailUrl, ["mail", "dns"]], ["Web 2", web2Url, ["web", "backup"]]]) {
    const res = await page.request.post(`${BASE}/api/v1/servers`, {
      headers: AUTH,
      data: { name, hostname: `${name.replace(" ", "").toLowerCase()}.example.com`, agent_url: url, agent_token: env("AGENT_TOKEN"), roles },
    });
    assert.equal(res.status(), 201, await res.text());
    ids[name] = (await res.json()).id;
  }

  step("login, then Accounts");
  await page.goto(`${BASE}/?refresh=500`);
  await page.getByLabel("Admin token").fill(env("ADMIN_TOKEN"));
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Servers" }).waitFor();
  await page.getByRole("link", { name: "Accounts" }).click();
  await page.getByRole("heading", { name: "Accounts" }).waitFor();
  assert.equal(await page.getByRole("link", { name: "Accounts" }).getAttribute("aria-current"), "page");
  await page.locator("#no-accounts").waitFor();

  step("errors beside their fields: the user name, a pin the server cannot take");
  await page.getByRole("button", { name: "Add Account" }).click();
  const dialog = page.locator("#account-dialog");
  await dialog.waitFor();
  assert.equal(await page.getByLabel("Mail server").isVisible(), false, "no pin for a role not chosen");
  await page.getByLabel("User Name").fill("Shop");
  await page.getByLabel("Domains").fill("shop.example");
  await page.getByRole("button", { name: "Create" }).click();
  const userError = page.locator('.error[data-for="username"]');
  await userError.waitFor();
  // The rule in words, not the first character that breaks it.
  assert.match(await userError.textContent(), /lowercase letters, digits, '_' and '-', starting with a letter/);
  assert.equal(await page.getByLabel("User Name").getAttribute("aria-invalid"), "true");
  await page.getByLabel("User Name").fill("shop");
  await dialog.getByLabel("mail", { exact: true }).check();
  // Only servers with the role are offered; a pin to another (as a panel might send) is
  // refused by the API beside the select.
  const offered = await page.getByLabel("Mail server").locator("option").allTextContents();
  assert.deepEqual(offered, ["Automatic", "Mail 1"]);
  await page.evaluate((id) => {
    const s = document.querySelector("#a-pin-mail");
    s.append(new Option("Web 1 (forced)", String(id)));
    s.value = String(id);
  }, ids["Web 1"]);
  await page.getByRole("button", { name: "Create" }).click();
  const pinError = page.locator('.error[data-for="servers.mail"]');
  await pinError.waitFor();
  assert.match(await pinError.textContent(), /lacks the role\(s\) mail/);
  await page.screenshot({ path: `${SHOTS}/account-form-error.png` });

  step("an account with web, mail, dns and db: each role on its server");
  await page.getByLabel("Mail server").selectOption({ label: "Automatic" });
  await dialog.getByLabel("dns", { exact: true }).check();
  await dialog.getByLabel("db", { exact: true }).check();
  await page.getByLabel("Domains").fill("shop.example, www.shop.example");
  await page.getByRole("button", { name: "Create" }).click();
  await dialog.waitFor({ state: "hidden" });
  const shop = page.locator('#account-table tr[data-name="shop"]');
  await shop.waitFor();
  const cell = (label) => shop.locator(`td[data-label="${label}"]`).textContent();
  assert.equal(await cell("Domains"), "shop.example, www.shop.example");
  assert.equal(await cell("Status"), "active");
  assert.equal(await cell("Web"), "Web 1", "the least loaded web server");
  assert.equal(await cell("Mail"), "Mail 1");
  assert.equal(await cell("DNS"), "Mail 1");
  assert.equal(await cell("DB"), "Web 1");
  await page.screenshot({ path: `${SHOTS}/accounts.png` });

  step("the account's mail: mailboxes and aliases added, changed and removed; DKIM records");
  await page.getByRole("button", { name: "Mail of shop" }).click();
  const mail = page.locator("#mail-dialog");
  await mail.waitFor();
  await page.locator("#no-mailboxes").waitFor();
  const dkim = page.locator('#dkim-list li[data-domain="shop.example"]');
  await dkim.waitFor();
  assert.match(await dkim.textContent(), /^enconf\._domainkey\.shop\.examplev=DKIM1; k=rsa; p=MII/);
  const mbForm = page.locator("#mailbox-form");
  await mbForm.getByLabel("Address").fill("in:fo@shop.example");
  await mbForm.getByLabel("Password").fill("correct horse 1");
  await page.getByRole("button", { name: "Add Mailbox" }).click();
  const addressError = mbForm.locator('.error[data-for="address"]');
  await addressError.waitFor();
  assert.match(await addressError.textContent(), /address/);
  assert.equal(await mbForm.getByLabel("Address").getAttribute("aria-invalid"), "true");
  await mbForm.getByLabel("Address").fill("info@shop.example");
  await page.getByRole("button", { name: "Add Mailbox" }).click();
  const info = page.locator('#mailbox-table tr[data-address="info@shop.example"]');
  await info.waitFor();
  assert.equal(await info.locator('td[data-label="Quota"]').textContent(), "default");
  assert.equal(await mbForm.getByLabel("Password").inputValue(), "", "the form forgets the password");
  assert.ok(!(await page.content()).includes("correct horse 1"), "no password in the page");
  await page.getByRole("button", { name: "Change info@shop.example" }).click();
  assert.equal(await mbForm.getByLabel("Address").isDisabled(), true);
  await mbForm.getByLabel("Quota (MB)").fill("0");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await mbForm.locator('.error[data-for="quota_mb"]').waitFor();
  await mbForm.getByLabel("Quota (MB)").fill("250");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.waitForFunction(() => document.querySelector('#mailbox-table tr[data-address="info@shop.example"] td[data-label="Quota"]')?.textContent === "250 MB");

  const alForm = page.locator("#alias-form");
  await alForm.getByLabel("Alias address").fill("team@shop.example");
  await alForm.getByLabel("Destinations").fill("team@shop.example");
  await page.getByRole("button", { name: "Add Alias" }).click();
  await alForm.locator('.error[data-for="destinations"]').waitFor();
  await alForm.getByLabel("Destinations").fill("info@shop.example, boss@elsewhere.example");
  await page.getByRole("button", { name: "Add Alias" }).click();
  const team = page.locator('#alias-table tr[data-address="team@shop.example"]');
  await team.waitFor();
  assert.equal(await team.locator('td[data-label="Destinations"]').textContent(), "info@shop.example, boss@elsewhere.example");
  await page.getByRole("button", { name: "Change alias team@shop.example" }).click();
  await alForm.getByLabel("Destinations").fill("info@shop.example");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.waitForFunction(() => document.querySelector('#alias-table tr[data-address="team@shop.example"] td[data-label="Destinations"]')?.textContent === "info@shop.example");
  await page.screenshot({ path: `${SHOTS}/mail.png`, fullPage: true });
  for (const label of ["Delete alias team@shop.example", "Delete info@shop.example"]) {
    page.once("dialog", (d) => d.accept());
    await page.getByRole("button", { name: label }).click();
  }
  await team.waitFor({ state: "detached" });
  await info.waitFor({ state: "detached" });
  await page.locator("#no-mailboxes").waitFor();
  await page.getByRole("button", { name: "Close" }).click();
  await mail.waitFor({ state: "hidden" });

  step("the account's zone: enconf's records, one of its own added, changed and removed, signed");
  await page.getByRole("button", { name: "DNS of shop" }).click();
  const dns = page.locator("#dns-dialog");
  await dns.waitFor();
  // The dialog opens at once and fills the zone list when the API answers.
  await page.locator('#dns-zone option[value="shop.example"]').waitFor({ state: "attached" });
  assert.equal(await page.getByLabel("Zone").inputValue(), "shop.example");
  const managedNs = page.locator('#record-table tr[data-managed="true"]', { hasText: "mail1.example.com." });
  await managedNs.first().waitFor();
  assert.equal(await managedNs.first().locator('td[data-label="Made by"]').textContent(), "enconf");
  assert.equal(await managedNs.first().getByRole("button").count(), 0, "enconf's records cannot be changed by hand");
  const recForm = page.locator("#record-form");
  await recForm.getByLabel("Record name").fill("blog");
  await recForm.getByLabel("Type").selectOption("MX");
  await recForm.getByLabel("Content").fill("192.0.2.20");
  await recForm.getByLabel("Priority").fill("10");
  await page.getByRole("button", { name: "Add Record" }).click();
  const contentError = recForm.locator('.error[data-for="content"]');
  await contentError.waitFor();
  assert.match(await contentError.textContent(), /host/);
  await recForm.getByLabel("Type").selectOption("A");
  await recForm.getByLabel("Priority").fill("");
  await page.getByRole("button", { name: "Add Record" }).click();
  const blog = page.locator('#record-table tr[data-managed="false"]', { hasText: "192.0.2.20" });
  await blog.waitFor();
  assert.equal(await blog.locator('td[data-label="Name"]').textContent(), "blog");
  await page.getByRole("button", { name: "Change record blog A" }).click();
  await recForm.getByLabel("Content").fill("192.0.2.21");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.locator('#record-table tr[data-managed="false"]', { hasText: "192.0.2.21" }).waitFor();
  await page.getByRole("button", { name: "Sign with DNSSEC" }).click();
  await page.locator("#ds-box").waitFor();
  assert.match(await page.locator("#ds-list").textContent(), /^shop\.example\. IN DS \d+ 13 2 [0-9a-f]{64}$/);
  await page.getByRole("button", { name: "Stop signing" }).waitFor();
  await page.screenshot({ path: `${SHOTS}/dns.png`, fullPage: true });
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Delete record blog A" }).click();
  await page.locator('#record-table tr[data-managed="false"]').first().waitFor({ state: "detached" });
  await page.getByRole("button", { name: "Close" }).click();
  await dns.waitFor({ state: "hidden" });

  step("the account's databases: a database and a user added, the user changed, both removed");
  await page.getByRole("button", { name: "Databases of shop" }).click();
  const db = page.locator("#db-dialog");
  await db.waitFor();
  await page.locator("#no-databases").waitFor();
  const dbForm = page.locator("#database-form");
  await dbForm.getByLabel("Database name").fill("word press");
  await page.getByRole("button", { name: "Add Database", exact: true }).click();
  const nameError = dbForm.locator('.error[data-for="name"]');
  await nameError.waitFor();
  assert.match(await nameError.textContent(), /' '/);
  await dbForm.getByLabel("Database name").fill("wp");
  await page.getByRole("button", { name: "Add Database", exact: true }).click();
  await page.locator('#database-table tr[data-database="shop_wp"]').waitFor();
  const userForm = page.locator("#db-user-form");
  await userForm.getByLabel("Database user").fill("app");
  await userForm.getByLabel("Password").fill("short");
  await userForm.getByLabel("shop_wp").check();
  await page.getByRole("button", { name: "Add Database User" }).click();
  const passwordError = userForm.locator('.error[data-for="password"]');
  await passwordError.waitFor();
  assert.match(await passwordError.textContent(), /at least 8/);
  await userForm.getByLabel("Password").fill("a-long-secret-1");
  await page.getByRole("button", { name: "Add Database User" }).click();
  const app = page.locator('#db-user-table tr[data-db-user="shop_app"]');
  await app.waitFor();
  assert.equal(await app.locator('td[data-label="Databases"]').textContent(), "shop_wp");
  assert.equal(await app.locator('td[data-label="Connects from"]').textContent(), "localhost, 127.0.0.1",
    "web and db are on one server");
  await page.screenshot({ path: `${SHOTS}/databases.png`, fullPage: true });
  await page.getByRole("button", { name: "Change database user shop_app" }).click();
  await userForm.getByLabel("shop_wp").uncheck();
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.waitForFunction(() => document.querySelector('#db-user-table tr[data-db-user="shop_app"] td[data-label="Databases"]')?.textContent === "—");
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Delete database user shop_app" }).click();
  await app.waitFor({ state: "detached" });
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Delete database shop_wp" }).click();
  await page.locator('#database-table tr[data-database="shop_wp"]').waitFor({ state: "detached" });
  await page.getByRole("button", { name: "Close" }).click();
  await db.waitFor({ state: "hidden" });

  step("migrate the web role: errors beside the field, then done");
  await page.getByRole("button", { name: "Migrate shop" }).click();
  const migrate = page.locator("#migrate-dialog");
  await migrate.waitFor();
  // Nothing chosen: said at once, nothing sent.
  await page.getByRole("button", { name: "Migrate", exact: true }).click();
  assert.match(await page.locator("#migrate-error").textContent(), /at least one role/);
  await page.getByLabel("Move the site to").selectOption({ label: "Mail 1 (mail, dns)" });
  await page.getByRole("button", { name: "Migrate", exact: true }).click();
  const targetError = page.locator('.error[data-for="targets.web"]');
  await targetError.waitFor();
  assert.match(await targetError.textContent(), /lacks the role\(s\) web/);
  await page.getByLabel("Move the site to").selectOption({ label: "Web 2 (web, backup)" });
  await page.getByRole("button", { name: "Migrate", exact: true }).click();
  await migrate.waitFor({ state: "hidden" });
  await page.waitForFunction(() => document.querySelector('#account-table tr[data-name="shop"] td[data-label="Web"]')?.textContent === "Web 2");
  assert.equal(await cell("Mail"), "Mail 1", "the other roles stay");
  await page.waitForFunction(() => document.querySelector("#accounts-job")?.textContent === "shop is migrated.");

  step("search by user name or domain prefix");
  const names = () => page.evaluate(() => [...document.querySelectorAll("#account-table tbody tr")].map((r) => r.dataset.name).join());
  const search = page.getByLabel("Search accounts");
  await search.fill("nothing-here");
  await page.locator("#no-accounts", { hasText: "No account matches" }).waitFor();
  assert.equal(await names(), "");
  await search.fill("www.SHOP");
  await page.waitForFunction(() => document.querySelector('#account-table tr[data-name="shop"]'));
  assert.equal(await names(), "shop", "a domain prefix, in any case");
  await search.fill("a b");
  await page.locator("#accounts-load-error", { hasText: "The search must not contain" }).waitFor();
  await search.fill("");
  await page.waitForFunction(() => document.querySelector('#account-table tr[data-name="shop"]') && !document.querySelector("#accounts-load-error").textContent);

  step("every action is visible at 1280 px");
  for (const table of ["#account-table", "#server-table"]) {
    if (table === "#server-table") {
      await page.getByRole("link", { name: "Servers" }).click();
      await page.locator('#server-table tr[data-name="Web 2"]').waitFor();
    }
    const boxes = await page.locator(`${table} .row-actions button`).evaluateAll((bs) => bs.map((b) => {
      const r = b.getBoundingClientRect();
      return { label: b.getAttribute("aria-label"), right: r.right, left: r.left };
    }));
    assert.ok(boxes.length > 0, table);
    for (const b of boxes) {
      assert.ok(b.left >= 0 && b.right <= 1280, `${b.label} is cut off: ${JSON.stringify(b)}`);
    }
  }
  await page.screenshot({ path: `${SHOTS}/server-table-1280.png` });
  await page.getByRole("link", { name: "Accounts" }).click();
  await shop.waitFor();

  step("every action is reachable at 375 px");
  await page.setViewportSize({ width: 375, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
  for (const label of ["Mail of shop", "DNS of shop", "Databases of shop", "Migrate shop", "Delete shop"]) {
    const button = page.getByRole("button", { name: label });
    await button.scrollIntoViewIfNeeded();
    const box = await button.boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 375, `${label}: ${JSON.stringify(box)}`);
  }
  await page.screenshot({ path: `${SHOTS}/accounts-narrow.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  step("backups: one made and followed to its end, then a restore of its files");
  const blogRes = await page.request.post(`${BASE}/api/v1/accounts`, {
    headers: AUTH, data: { username: "blog", domains: ["blog.example"], roles: ["web", "backup"], servers: { web: ids["Web 2"] } },
  });
  assert.equal(blogRes.status(), 201, await blogRes.text());
  await page.reload();
  await page.getByRole("heading", { name: "Accounts" }).waitFor();
  await page.getByRole("button", { name: "Backups of blog" }).click();
  const backups = page.locator("#backup-dialog");
  await backups.waitFor();
  await backups.locator("#no-snapshots").waitFor();
  await page.getByRole("button", { name: "Back Up Now" }).click();
  // A second one while it runs: the API's refusal is shown.
  await page.getByRole("button", { name: "Back Up Now" }).click();
  await backups.locator("#backup-error").filter({ hasText: /not finished yet/ }).waitFor();
  const done = backups.locator('#job-table tr[data-status="succeeded"]');
  await done.waitFor({ timeout: 60000 });
  // The job's figures as the API has them are what the row shows.
  const jobId = await done.getAttribute("data-job");
  const apiJob = await (await page.request.get(`${BASE}/api/v1/jobs/${jobId}`, { headers: AUTH })).json();
  assert.equal(apiJob.kind, "backup");
  assert.equal(apiJob.progress.done, apiJob.progress.total, JSON.stringify(apiJob));
  assert.match(await done.locator('td[data-label="Progress"]').textContent(),
    new RegExp(`${apiJob.progress.files_done} of ${apiJob.progress.files_total} files`));
  const snapshot = backups.locator("#snapshot-table tbody tr");
  await snapshot.first().waitFor();
  assert.equal(await snapshot.count(), 1);
  assert.match(await snapshot.first().locator('td[data-label="Holds"]').textContent(), /files/);
  await page.screenshot({ path: `${SHOTS}/backups.png` });
  await snapshot.first().getByRole("button", { name: /^Restore / }).click();
  const restore = page.locator("#restore-form");
  await restore.waitFor();
  assert.equal(await restore.getByLabel("databases").isDisabled(), true, "a part the snapshot lacks is not offered");
  await restore.getByRole("button", { name: "Restore" }).click();
  await restore.waitFor({ state: "hidden" });
  await backups.locator('#job-table tr[data-status="succeeded"]', { hasText: "restore of" }).waitFor({ timeout: 60000 });
  await page.getByRole("button", { name: "Close" }).and(backups.locator("#close-backup")).click();
  await backups.waitFor({ state: "hidden" });

  step("delete");
  // The account with backups goes after its final backup.
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Delete blog" }).click();
  await page.locator('#account-table tr[data-name="blog"]').waitFor({ state: "detached", timeout: 60000 });
  page.on("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Delete shop" }).click();
  await shop.waitFor({ state: "detached" });
  await page.locator("#no-accounts").waitFor();

  step("every input has a label");
  const unlabeled = await page.evaluate(() => [...document.querySelectorAll("input, select, textarea")]
    .filter((i) => !i.labels?.length && !i.getAttribute("aria-label")).map((i) => i.id || i.name));
  assert.deepEqual(unlabeled, []);
  console.log("browser tests passed");
} finally {
  await browser.close();
}
