// Drives PiServe's page in Debian's chromium (playwright-core, no browser download).
// Usage: node run.mjs < {"baseUrl", "screenshots", "dataset"}; prints one JSON result.
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const input = JSON.parse(await new Promise((resolve) => {
  let s = "";
  process.stdin.on("data", (d) => (s += d));
  process.stdin.on("end", () => resolve(s));
}));
const result = { consoleErrors: [], steps: {} };
const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "piserve-chromium-")), {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 900 },
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") result.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => result.consoleErrors.push(String(e)));
  await page.goto(input.baseUrl + "/");
  await page.waitForSelector("body[data-ready=true]", { timeout: 15000 });
  result.steps.models = await page.$$eval("#model option", (o) => o.map((x) => x.value));

  // Playground: a long generation streams into #output; Stop ends it.
  // Position Interpolation ×8 from the page lifts the tiny model's 512-token window to 4096.
  await page.selectOption("#rope-type", "linear");
  await page.fill("#rope-factor", "8");
  await page.fill("#max-tokens", "4000");
  await page.fill("#seed", "1");
  await page.click("#generate");
  const lengths = [];
  await page.waitForFunction(() => document.getElementById("output").textContent.length > 0, null, { timeout: 15000 });
  for (let i = 0; i < 8; i++) {
    await page.waitForTimeout(50);
    lengths.push((await page.textContent("#output")).length);
  }
  result.steps.growth = lengths;
  await page.click("#stop");
  await page.waitForTimeout(300);
  const afterStop = (await page.textContent("#output")).length;
  await page.waitForTimeout(700);
  result.steps.afterStop = [afterStop, (await page.textContent("#output")).length];
  result.steps.status = await page.textContent("#status");
  await page.screenshot({ path: join(input.screenshots, "playground.png"), fullPage: true });

  // Evaluations: a perplexity job started from the page shows progress, then a chart with data.
  await page.click("#tab-evals");
  await page.selectOption("#eval-kind", "perplexity");
  if (input.dataset) await page.selectOption("#eval-dataset", input.dataset);
  await page.fill("#eval-parameters", JSON.stringify({ windows: [32, 64], stride: 32, max_documents: 1, max_tokens: 128 }));
  await page.click("#eval-start");
  await page.waitForFunction(() => window.piserveCharts.perplexity?.data.datasets.length > 0, null, { timeout: 60000 });
  result.steps.progress = await page.$eval("#eval-progress", (e) => e.style.width);
  result.steps.chartPoints = await page.evaluate(() => window.piserveCharts.perplexity.data.datasets[0].data.length);
  result.steps.evalStatus = await page.textContent("#eval-status");
  await page.screenshot({ path: join(input.screenshots, "evaluations.png"), fullPage: true });
} catch (e) {
  result.error = String(e.message ?? e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result));
