// Real-browser end-to-end test of sweep's page: Debian's chromium, driven by playwright-core.
//
//   node tests/e2e/e2e.mjs path/to/sweep              run a small live study and check the page
//   node tests/e2e/e2e.mjs --scale DB path/to/sweep [STUDY]   time a study page over a big database
//
// The first form starts `sweep run STUDY --serve 127.0.0.1:0`, opens the page headless, and
// checks that trials appear in the table, a learning curve grows while the sweep runs, pause
// and resume work from the page, and a trial opens in the detail view. Then it runs a small grid
// study to the end and checks the comparison view against the server's answer. Screenshots go to
// target/e2e/. Any failed check, page error or request outside the server exits non-zero.
// It builds nothing: tests/run.sh builds the binary first.
import { chromium } from 'playwright-core';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ARTIFACTS = join(ROOT, 'target', 'e2e');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const LIMIT_MS = 170_000; // the whole run, whatever happens

const cleanups = [];
let passed = 0;

function ok(what) {
  passed++;
  console.log(`ok ${passed} - ${what}`);
}

async function cleanup() {
  for (const f of cleanups.reverse()) await Promise.resolve().then(f).catch(() => {});
}

function fail(message) {
  console.error(`not ok - ${message}`);
  console.log(`e2e: ${passed} passed, 1 failed`);
  cleanup().finally(() => process.exit(1));
}

const watchdog = setTimeout(() => fail(`timed out after ${LIMIT_MS / 1000}s`), LIMIT_MS);

/** Starts a sweep command and resolves with the URL it prints (`serving ... http://ADDR/`). */
function startSweep(bin, args, cwd) {
  const child = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  cleanups.push(
    () =>
      new Promise((done) => {
        if (child.exitCode != null) return done();
        child.once('exit', done);
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }),
  );
  const url = new Promise((found, lost) => {
    const timer = setTimeout(() => lost(new Error(`no URL printed in 30s:\n${log}`)), 30_000);
    const read = (chunk) => {
      log += chunk;
      const m = log.match(/http:\/\/[^\s/]+\//);
      if (m) {
        clearTimeout(timer);
        found(m[0]);
      }
    };
    child.stdout.setEncoding('utf8').on('data', read);
    child.stderr.setEncoding('utf8').on('data', read);
    child.once('exit', (code) => lost(new Error(`sweep exited (${code}) before serving:\n${log}`)));
  });
  return { child, url, log: () => log };
}

async function browser() {
  const profile = mkdtempSync(join(tmpdir(), 'sweep-e2e-profile-'));
  cleanups.push(() => rmSync(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
  cleanups.push(() => context.close());
  return context;
}

/** A new page in a new browser, with its errors and console errors collected in `problems`. */
async function watchedPage() {
  const context = await browser();
  const page = await context.newPage();
  lastPage = page;
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console error: ${m.text()}`));
  return { page, problems };
}

/** Polls `check` in the page until it returns a truthy value. */
async function until(page, what, check, arg, timeout = 20_000) {
  try {
    const handle = await page.waitForFunction(check, arg, { timeout, polling: 100 });
    return await handle.jsonValue();
  } catch (e) {
    throw new Error(`${what}: ${e.message.split('\n')[0]}`);
  }
}

const STUDY = `name = "e2e"
metric = "loss"
direction = "minimize"
seed = 5

# Enough trials that the sweep (and so its server) outlives every check on a slow machine:
# with 10 it once finished, taking the page's server with it, before the last check.
[budget]
trials = 60
parallel = 2

[params.x0]
type = "float"
low = -5.0
high = 10.0

[params.x1]
type = "float"
low = 0.0
high = 15.0

[params.opt]
choices = ["adam", "sgd"]

[pruner]
kind = "median"
warmup_steps = 4
min_trials = 2

[trial]
worker = "testfn"
args = ["--fn", "branin", "--steps", "14", "--sleep-ms", "150", "--metric", "loss"]
grace = "300ms"
`;

/** The page as it was when a check failed, for the artifacts. */
let lastPage = null;
async function failureShot() {
  if (!lastPage) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  await lastPage.screenshot({ path: join(ARTIFACTS, 'failure.png'), fullPage: true, timeout: 5000 }).catch(() => {});
  console.error('screenshot of the failure: target/e2e/failure.png');
}

async function live(bin) {
  const dir = mkdtempSync(join(tmpdir(), 'sweep-e2e-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'study.toml'), STUDY);
  const sweep = startSweep(bin, ['--db', join(dir, 'sweep.db'), 'run', 'study.toml', '--serve', '127.0.0.1:0', '--no-progress'], dir);
  const base = await sweep.url;
  ok(`sweep serves ${base}`);

  const context = await browser();
  const page = context.pages()[0] ?? (await context.newPage());
  lastPage = page;
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console error: ${m.text()}`));
  context.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(base) && !u.startsWith('data:')) problems.push(`request outside the server: ${u}`);
  });

  await page.goto(base, { timeout: 20_000 });
  // One study: the page opens it by itself.
  await until(page, 'the study page opens', () => document.querySelector('#summary h1')?.textContent === 'e2e');
  ok('the study page opens with its summary');

  const rows = await until(page, 'trials appear in the table', () => document.querySelectorAll('#trial-table tbody tr[data-number]').length);
  ok(`trials appear in the table (${rows} rows)`);

  const first = Number(await until(page, 'a learning curve is drawn', () => Number(document.querySelector('#plot-curves')?.dataset.points ?? 0)));
  const grown = Number(
    await until(page, 'the learning curves grow while the sweep runs', (n) => {
      const now = Number(document.querySelector('#plot-curves')?.dataset.points ?? 0);
      return now > n + 2 && now;
    }, first, 15_000),
  );
  ok(`learning curves update live (${first} -> ${grown} points, no reload)`);
  const moreRows = await until(page, 'more trials appear live', (n) => {
    const k = document.querySelectorAll('#trial-table tbody tr[data-number]').length;
    return k > n && k;
  }, rows, 20_000);
  ok(`the table updates live (${rows} -> ${moreRows} rows)`);

  const inked = await page.evaluate(() => {
    const c = document.querySelector('#plot-curves canvas');
    if (!c) return 0;
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
    return n;
  });
  if (inked < 500) throw new Error(`the curves canvas is nearly empty (${inked} pixels drawn)`);
  ok(`the curves are actually drawn (${inked} pixels)`);

  // Control from the page: pause, see it applied by the coordinator, resume.
  await page.getByRole('button', { name: 'Pause' }).click();
  await until(page, 'the study shows paused', () => !!document.querySelector('#summary .badge.s-paused'), undefined, 10_000);
  await page.getByRole('button', { name: 'Resume' }).click();
  await until(page, 'the study resumes', () => !document.querySelector('#summary .badge.s-paused'), undefined, 10_000);
  ok('pause and resume from the page reach the coordinator');

  await until(page, 'the history plot has points', () => Number(document.querySelector('#plot-history')?.dataset.points ?? 0) > 0);
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'study.png'), fullPage: true });
  ok('screenshot target/e2e/study.png');

  // The table re-renders as trials arrive (newest first), so the row under the click may be a
  // newer trial than the one looked at: check that the detail shows the trial the page opened.
  await page.locator('#trial-table tbody tr[data-number]').first().click();
  const number = await until(page, 'the trial detail opens', () => {
    const shown = document.querySelector('#detail h2')?.textContent?.match(/^Trial (\d+)$/)?.[1];
    return shown && location.hash.endsWith(`/t/${shown}`) && shown;
  });
  await until(page, 'the detail shows params and reports', () => {
    const text = document.querySelector('#detail')?.textContent ?? '';
    return text.includes('Params') && text.includes('x0') && /Reports \(\d+\)/.test(text);
  });
  await page.screenshot({ path: join(ARTIFACTS, 'trial.png') });
  ok(`trial ${number} opens in the detail view (screenshot target/e2e/trial.png)`);

  await page.keyboard.press('Escape');
  await until(page, 'the detail closes', () => !document.querySelector('#detail'));
  const text = (await page.textContent('body')) ?? '';
  if (text.trim().length < 200) throw new Error('the page shows (almost) nothing');
  if (problems.length) throw new Error(problems.join('\n'));
  ok('no page errors, nothing loaded from outside the server');
}

const GRID = `name = "grid"
metric = "loss"
direction = "minimize"

[sampler]
kind = "grid"

[params.x0]
type = "float"
low = -5.0
high = 10.0
grid = [-5.0, 0.0, 5.0, 10.0]

[params.x1]
type = "float"
low = 0.0
high = 15.0
grid = [0.0, 7.5, 15.0]

[params.opt]
choices = ["adam", "sgd"]

[trial]
worker = "testfn"
args = ["--fn", "branin", "--steps", "2", "--metric", "loss"]
`;

/** The comparison view over a finished grid: default lines, group-by and x pickers, and the
 * numbers in its table equal to the server's answer. */
async function comparison(bin) {
  const dir = mkdtempSync(join(tmpdir(), 'sweep-e2e-grid-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'grid.toml'), GRID);
  const db = join(dir, 'sweep.db');
  const ran = spawnSync(bin, ['--db', db, 'run', 'grid.toml', '--no-progress'], { cwd: dir, encoding: 'utf8', timeout: 40_000 });
  if (ran.status !== 0) throw new Error(`the grid study failed (${ran.status}):\n${ran.stdout}${ran.stderr}`);
  const base = await startSweep(bin, ['--db', db, 'serve', '127.0.0.1:0'], dir).url;
  const { page, problems } = await watchedPage();
  await page.goto(base, { timeout: 20_000 });
  const shape = () => {
    const el = document.querySelector('#plot-compare');
    const rows = [...document.querySelectorAll('#compare-table tbody tr')].map((r) => [...r.cells].map((c) => c.textContent));
    return el && rows.length ? { series: Number(el.dataset.series), cells: Number(el.dataset.cells), rows } : null;
  };
  // Defaults: x is the first param (x0), the lines the categorical one (opt), over x1.
  const first = await until(page, 'the comparison is drawn', shape);
  if (first.series !== 2 || first.cells !== 8 || first.rows.some((r) => r[2] !== '3')) {
    throw new Error(`expected 2 lines of 4 cells of 3 trials, got ${JSON.stringify(first)}`);
  }
  const answer = await (await fetch(`${base}api/studies/grid/compare?x=x0&group=opt`)).json();
  const shown = first.rows.map((r) => Number(r[3]));
  const served = answer.series.flatMap((s) => s.cells.map((k) => Number(k.mean.toPrecision(5))));
  if (JSON.stringify(shown) !== JSON.stringify(served)) throw new Error(`table means ${shown} != the server's ${served}`);
  const inked = await page.evaluate(() => {
    const c = document.querySelector('#plot-compare canvas');
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
    return n;
  });
  if (inked < 500) throw new Error(`the comparison canvas is nearly empty (${inked} pixels drawn)`);
  ok(`comparison view: 2 lines (opt) over x0, means equal to the server's, ${inked} pixels drawn`);

  await page.locator('#compare-controls input.compare-group[value="x1"]').check();
  await until(page, 'grouping by opt and x1 gives six lines', () => {
    const el = document.querySelector('#plot-compare');
    return el?.dataset.series === '6' && el.dataset.cells === '24';
  });
  await page.locator('#compare-controls input.compare-group[value="opt"]').uncheck();
  await until(page, 'grouping by x1 alone gives three lines of 2 trials', () => {
    const rows = [...document.querySelectorAll('#compare-table tbody tr')];
    return document.querySelector('#plot-compare')?.dataset.series === '3' && rows.length === 12 && rows.every((r) => r.cells[2].textContent === '2');
  });
  await page.selectOption('#compare-x', 'opt');
  await until(page, 'opt on the x axis: three lines of two cells', () => {
    const el = document.querySelector('#plot-compare');
    return el?.dataset.series === '3' && el.dataset.cells === '6';
  });
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.locator('#plot-compare').screenshot({ path: join(ARTIFACTS, 'compare.png') });
  if (problems.length) throw new Error(problems.join('\n'));
  ok('comparison view: group-by and x pickers redraw from the server (screenshot target/e2e/compare.png)');
}

const PARETO = `name = "mo"
seed = 3
constraints = ["f1 <= 0.8"]

[budget]
trials = 24
parallel = 3

${[0, 1, 2, 3, 4, 5].map((i) => `[params.x${i}]\ntype = "float"\nlow = 0.0\nhigh = 1.0\n`).join('\n')}
[trial]
worker = "testfn"
args = ["--fn", "zdt1", "--steps", "3", "--sleep-ms", "250"]

[[objectives]]
metric = "f1"
direction = "minimize"

[[objectives]]
metric = "f2"
direction = "minimize"
`;

/** The Pareto card and the hypervolume history of a two-objective study with a constraint,
 * live while a coordinator runs it (a separate \`sweep serve\` reads the same database): the
 * card grows to every trial, its Pareto set is the server's, the table has a column per
 * objective, and a click on a point of the set opens that trial. */
async function pareto(bin) {
  const dir = mkdtempSync(join(tmpdir(), 'sweep-e2e-mo-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'mo.toml'), PARETO);
  const db = join(dir, 'sweep.db');
  const run = spawn(bin, ['--db', db, 'run', 'mo.toml', '--no-progress'], { cwd: dir, stdio: 'ignore' });
  cleanups.push(() => run.exitCode == null && run.kill('SIGKILL'));
  const ran = new Promise((done) => run.once('exit', done));
  // The server opens the database once the coordinator has made it (and its study).
  for (let i = 0; i < 300; i++) {
    const status = spawnSync(bin, ['--db', db, 'status'], { cwd: dir, encoding: 'utf8' });
    if (status.status === 0 && status.stdout.includes('mo')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const base = await startSweep(bin, ['--db', db, 'serve', '127.0.0.1:0'], dir).url;
  const { page, problems } = await watchedPage();
  await page.goto(`${base}#/s/mo`, { timeout: 20_000 });
  const first = Number(
    await until(page, 'the Pareto card draws points', () => Number(document.querySelector('#plot-front')?.dataset.points ?? 0), undefined, 30_000),
  );
  const code = await ran;
  if (code !== 0) throw new Error(`the two-objective study failed (${code})`);
  await until(page, 'the Pareto card reaches every trial live', () => document.querySelector('#plot-front')?.dataset.points === '24');
  if (first >= 24) throw new Error('the study ended before the page drew it: nothing shows the card is live');
  const answer = await (await fetch(`${base}api/studies/mo/front`)).json();
  const members = answer.number.filter((_, i) => answer.pareto[i]);
  const infeasible = answer.meets_constraints.filter((m) => !m).length;
  const shown = await page.evaluate(() => ({
    pareto: Number(document.querySelector('#plot-front').dataset.pareto),
    hv: Number(document.querySelector('#plot-hypervolume').dataset.points),
    header: [...document.querySelectorAll('#trial-table thead th')].map((th) => th.textContent.replace(/[▲▼]/g, '')),
  }));
  if (shown.pareto !== members.length || shown.hv !== 24) throw new Error(`card ${JSON.stringify(shown)} vs the server's set ${members}`);
  if (!shown.header.includes('f1') || !shown.header.includes('f2')) throw new Error(`no column per objective: ${shown.header}`);
  ok(`Pareto card: ${first} -> 24 points live, ${members.length} in the set as the server says, ${infeasible} infeasible; hypervolume history; a column per objective`);
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.locator('#plot-front').screenshot({ path: join(ARTIFACTS, 'pareto.png') });
  const at = await page.evaluate((n) => document.querySelector('#plot-front').pointOf(n), members[0]);
  await page.mouse.move(at.x, at.y);
  await page.mouse.click(at.x, at.y);
  await until(page, 'a click on a point of the set opens its trial', (n) => location.hash.endsWith(`/t/${n}`), members[0]);
  await page.keyboard.press('Escape');
  await until(page, 'the detail closes', () => !document.querySelector('#detail'));
  await page.locator('#trial-table thead th', { hasText: 'f2' }).click();
  await until(page, 'the f2 column sorts', () => {
    const cells = [...document.querySelectorAll('#trial-table tbody tr[data-number]')].map((r) => Number(r.cells[3].textContent));
    return cells.length > 1 && cells.every((v, i) => i === 0 || cells[i - 1] <= v);
  });
  if (problems.length) throw new Error(problems.join('\n'));
  ok(`a click on trial ${members[0]} of the set opens it; the f2 column sorts (screenshot target/e2e/pareto.png)`);
}

/** Times the study page over a big database: until the summary, table, history and curves are drawn. */
async function scale(db, bin, name) {
  const sweep = startSweep(bin, ['--db', db, 'serve', '127.0.0.1:0'], process.cwd());
  const base = await sweep.url;
  const studies = await (await fetch(`${base}api/studies`)).json();
  const study = studies.studies.find((s) => s.name === name) ?? studies.studies[0];
  console.log(`study ${study.name}: ${study.finished} finished trials`);
  const context = await browser();
  const times = [];
  const complete = [];
  for (let run = 0; run < 5; run++) {
    const page = await context.newPage();
    const t0 = Date.now();
    await page.goto(`${base}#/s/${encodeURIComponent(study.name)}`, { timeout: 30_000 });
    await page.waitForFunction(() => document.body.dataset.ready === '1', undefined, { timeout: 30_000, polling: 20 });
    const ready = Date.now() - t0;
    await page.waitForFunction(() => document.body.dataset.complete === '1', undefined, { timeout: 30_000, polling: 20 });
    const all = Date.now() - t0;
    if (run === 0) {
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'scale.png'), fullPage: true });
    }
    times.push(ready);
    complete.push(all);
    await page.close();
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(
    `page render (navigation -> summary, table, history and curves drawn): median ${median(times)} ms ` +
      `(min ${Math.min(...times)}, max ${Math.max(...times)}, 5 loads); with parallel coordinates, slices and ` +
      `importance: median ${median(complete)} ms`,
  );
  ok('scale timing (screenshot target/e2e/scale.png)');
}

const args = process.argv.slice(2);
try {
  if (args[0] === '--scale') {
    if (args.length < 3) throw new Error('usage: node tests/e2e/e2e.mjs --scale DB path/to/sweep [STUDY]');
    await scale(resolve(args[1]), resolve(args[2]), args[3]);
  } else {
    if (args.length !== 1) throw new Error('usage: node tests/e2e/e2e.mjs path/to/sweep');
    await live(resolve(args[0]));
    await comparison(resolve(args[0]));
    await pareto(resolve(args[0]));
  }
  clearTimeout(watchdog);
  await cleanup();
  console.log(`e2e: ${passed} passed, 0 failed`);
  process.exit(0);
} catch (e) {
  await failureShot();
  fail(e.message);
}
