// node integration/browser/verify.mjs <api url> <out dir>
//
// Drives the explorer page of a running node in headless Chromium (the system's, through
// playwright-core; no browser download): the devnet's devices are listed, one verified value's
// trail is followed to its proof, "Verify in this browser" succeeds, and the same proof with a
// flipped byte (and frames with a flipped byte) is refused. Screenshots and result.json go to
// <out dir>. Exits 0 when every step held, 1 otherwise (the reason on stderr).
//
// Environment: GROUNDTRUTH_CHROMIUM (default /usr/bin/chromium); GROUNDTRUTH_EXPECT_DEVICES, a
// comma-separated list of device ids the page must list; GROUNDTRUTH_BROWSER_TIMEOUT_S (90).
import { chromium } from "playwright-core";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [api, out] = process.argv.slice(2);
if (!api || !out) {
  console.error("usage: node verify.mjs <api url> <out dir>");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const executablePath = process.env.GROUNDTRUTH_CHROMIUM || "/usr/bin/chromium";
const expected = (process.env.GROUNDTRUTH_EXPECT_DEVICES || "").split(",").filter(Boolean);
const timeoutMs = 1000 * Number(process.env.GROUNDTRUTH_BROWSER_TIMEOUT_S || 90);
const deadline = Date.now() + timeoutMs;
const left = () => Math.max(1000, deadline - Date.now());

const args = ["--disable-dev-shm-usage"];
// Chromium's sandbox needs user namespaces, which a root CI container does not give.
if (process.getuid && process.getuid() === 0) args.push("--no-sandbox");
const browser = await chromium.launch({ executablePath, headless: true, args });
const page = await browser.newPage({ viewport: { width: 1400, height: 1800 } });
const problems = [];
page.on("pageerror", (e) => problems.push("page error: " + e.message));
page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text() + " (" + (m.location().url || "?") + ")"); });
page.on("response", (r) => { if (r.status() >= 400) console.log("browser: HTTP " + r.status() + " " + r.url()); });
page.on("requestfailed", (r) => console.log("browser: request failed " + r.url() + ": " + (r.failure() || {}).errorText));
const shot = (name) => page.screenshot({ path: join(out, name), fullPage: true });
const result = { api, steps: [] };
const step = (s) => { result.steps.push(s); console.log("browser: " + s); };

async function verifyOnce(tamper, name) {
  await page.selectOption("#tamper", tamper);
  await page.click("#verify-here");
  await page.waitForFunction(
    () => !["idle", "running"].includes(document.querySelector("#verify-result").dataset.state),
    null, { timeout: left() });
  await shot(name);
  return page.$eval("#verify-result", (e) => ({
    state: e.dataset.state, verify_ms: Number(e.dataset.verifyMs || NaN), digest: e.dataset.digest || "", text: e.innerText,
  }));
}

const state = () => page.evaluate(() => ({
  device: document.querySelector("#device").value,
  list: document.querySelector("#verified-list").dataset.device || null,
  listText: document.querySelector("#verified-list").innerText.slice(0, 200),
  note: document.querySelector("#chart-note").innerText,
}));

let failure = null;
try {
  await page.goto(api.replace(/\/$/, "") + "/explorer", { timeout: left() });
  await page.waitForFunction(() => document.querySelectorAll("#device option").length > 0, null, { timeout: left() });
  const listed = await page.$$eval("#device option", (os) => os.map((o) => ({ id: o.value, kind: o.dataset.kind })));
  const missing = expected.filter((d) => !listed.some((o) => o.id === d));
  if (missing.length) throw new Error("the page does not list devices " + missing.join(", ") + "; it lists " + listed.map((o) => o.id).join(", "));
  step("page lists " + listed.length + " devices" + (expected.length ? " (all " + expected.length + " of the devnet)" : ""));
  await shot("01-explorer.png");

  // The first device (energy meters first) with a verified interval; the read model may take a
  // moment after the epoch commits, so look again until the deadline.
  const order = [...listed.filter((o) => o.kind === "energy"), ...listed.filter((o) => o.kind !== "energy")];
  // A value above zero when one is verified (meters report 0 Wh at night).
  let picked = null, pickedButton = null, fallback = null;
  while (!picked && Date.now() < deadline) {
    for (const o of order) {
      await page.selectOption("#device", o.id);
      await page.waitForFunction((id) => document.querySelector("#verified-list").dataset.device === id, o.id, { timeout: Math.min(30000, left()) })
        .catch(async (e) => { throw new Error("device " + o.id + " did not load: " + e.message + "; page state: " + JSON.stringify(await state())); });
      const buttons = await page.$$eval("#verified-list button.trail-pick", (bs) => bs.map((b, i) => ({ i, text: b.textContent })));
      const nonzero = buttons.find((b) => !/ · 0 (Wh|ms)$/.test(b.text));
      if (nonzero) { picked = o; pickedButton = nonzero.i; break; }
      if (buttons.length && !fallback) fallback = o;
    }
    if (!picked && fallback) { picked = fallback; pickedButton = 0; }
    if (!picked) await page.waitForTimeout(2000);
  }
  if (!picked) throw new Error("no device shows a verified interval");
  await page.selectOption("#device", picked.id);
  await page.waitForFunction((id) => document.querySelector("#verified-list").dataset.device === id && document.querySelector("#verified-list button.trail-pick"), picked.id, { timeout: left() });
  await page.locator("#verified-list button.trail-pick").nth(pickedButton).click();
  await page.waitForFunction(() => !document.querySelector("#verify-here").disabled, null, { timeout: left() });
  const trail = await page.$$eval("#trail li", (lis) => lis.map((l) => l.innerText));
  const proofUrl = await page.$eval("#trail a[href*='/proofs/']", (a) => a.getAttribute("href"));
  const framesUrl = await page.$eval("#trail a[href*='/frames/']", (a) => a.getAttribute("href"));
  Object.assign(result, { device: picked.id, trail, proof_url: proofUrl, frames_url: framesUrl });
  step("trail of device " + picked.id.slice(0, 12) + "…: " + trail.map((t) => t.split("\n")[0]).join(" | "));
  await shot("02-trail.png");

  const valid = await verifyOnce("", "03-verified-in-browser.png");
  result.valid = valid;
  if (valid.state !== "valid") throw new Error("in-browser verification did not succeed (" + valid.state + "): " + valid.text);
  step("verified in the browser in " + valid.verify_ms + " ms: " + valid.text.split("\n")[0]);

  const badProof = await verifyOnce("proof", "04-tampered-proof-refused.png");
  result.tampered_proof = badProof;
  if (badProof.state !== "refused") throw new Error("a proof with a flipped byte was not refused (" + badProof.state + "): " + badProof.text);
  step("flipped proof byte refused: " + badProof.text.split("\n").slice(0, 2).join(" "));

  const badFrame = await verifyOnce("frame", "05-tampered-frame-refused.png");
  result.tampered_frame = badFrame;
  if (badFrame.state !== "refused" || !badFrame.text.includes("signature")) throw new Error("frames with a flipped byte were not refused by a signature check (" + badFrame.state + "): " + badFrame.text);
  step("flipped frame byte refused: " + badFrame.text.split("\n").slice(0, 2).join(" "));

  // Once more as served, for a second timing sample.
  const again = await verifyOnce("", "06-verified-again.png");
  if (again.state !== "valid") throw new Error("the second in-browser verification did not succeed: " + again.text);
  result.verify_ms = [valid.verify_ms, again.verify_ms];
  if (problems.length) throw new Error("the page reported errors: " + problems.join("; "));
} catch (e) {
  failure = e;
  try { await shot("failure.png"); } catch (_) {}
}
result.problems = problems;
result.ok = failure == null;
if (failure) result.error = String(failure.message || failure);
writeFileSync(join(out, "result.json"), JSON.stringify(result, null, 2));
await browser.close();
if (failure) {
  console.error("browser: FAILED: " + result.error);
  process.exit(1);
}
console.log("browser: ok");
