// A screenshot of the plot of one study's comparison view, or of its Pareto-front card, as the
// page draws it (the README's figures):
//
//   node tests/e2e/shot.mjs URL STUDY OUT.png [GROUP,GROUP] [METRIC]
//   node tests/e2e/shot.mjs URL STUDY OUT.png --front
//
// URL is a running `sweep serve` (e.g. http://127.0.0.1:8765/). GROUP names the params that
// make the lines (default: the page's choice); METRIC the metric (default: the objective).
// Uses Debian's chromium (CHROMIUM overrides the path) through playwright-core, as e2e.mjs does.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const front = process.argv.includes('--front');
const [url, study, out, groups, metric] = process.argv.slice(2).filter((a) => a !== '--front');
if (!url || !study || !out) {
  console.error('usage: node tests/e2e/shot.mjs URL STUDY OUT.png [GROUP,GROUP] [METRIC] | --front');
  process.exit(2);
}
const profile = mkdtempSync(join(tmpdir(), 'sweep-shot-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 1000 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
try {
  const page = await context.newPage();
  await page.goto(`${url}#/s/${encodeURIComponent(study)}`, { timeout: 20_000 });
  if (front) {
    await page.waitForFunction(() => Number(document.querySelector('#plot-front')?.dataset.points ?? 0) > 0, null, { timeout: 20_000 });
    await page.waitForTimeout(500);
    await page.locator('.card:has(#plot-front)').screenshot({ path: out });
  } else {
    const drawn = () => page.waitForFunction(() => document.querySelectorAll('#compare-table tbody tr').length > 0, null, { timeout: 20_000 });
    await drawn();
    if (groups) {
      const wanted = new Set(groups.split(','));
      for (const box of await page.locator('#compare-controls input.compare-group').all()) {
        const name = await box.getAttribute('value');
        if (wanted.has(name) !== (await box.isChecked())) await (wanted.has(name) ? box.check() : box.uncheck());
      }
    }
    if (metric) await page.selectOption('#compare-metric', metric);
    await page.waitForTimeout(1000);
    await drawn();
    await page.locator('#plot-compare').screenshot({ path: out });
  }
  console.log(`wrote ${out}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
