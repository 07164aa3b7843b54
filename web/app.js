// sweep's page: the study list, and per study a summary, plots, the trial table and a trial
// detail view, kept live by the server's events. Plain ES modules, no build step; every number
// is computed by the server (api/...), the page only draws.
import { ComparePlot, CurvesPlot, HistoryPlot, HypervolumePlot, ParallelPlot, ParetoPlot, SlicePlots, fmt, groupLabel, reportsPlot } from './plots.js';

const token = new URLSearchParams(location.search).get('token');
const STATES = ['running', 'waiting', 'complete', 'pruned', 'failed', 'interrupted'];

// ---------- small helpers ----------

/** Builds an element: h('td', {class: 'num', onclick: f}, 'text', child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls the JSON API; the page's ?token= goes along as a bearer token. */
async function api(path, { method = 'GET', body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(`api/${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try {
    data = await r.json();
  } catch {
    // not JSON: keep the status line
  }
  if (!r.ok) throw new ApiError(r.status, data?.error ?? `${r.status} ${r.statusText}`);
  return data;
}

const enc = encodeURIComponent;

function duration(ms) {
  if (ms == null || ms < 0) return '–';
  const s = Math.round(ms / 1000);
  if (s < 60) return ms < 10000 ? `${(ms / 1000).toFixed(1)}s` : `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

function clock(ms) {
  if (ms == null) return '–';
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function paramText(v) {
  if (typeof v === 'number') return fmt(v);
  return v == null ? '–' : String(v);
}

function badge(state) {
  return h('span', { class: `badge s-${state}` }, state);
}

function toast(text, kind = '') {
  const el = h('div', { class: `toast ${kind}` }, text);
  document.getElementById('toasts').append(el);
  const remove = () => el.remove();
  setTimeout(remove, 9000);
  return {
    set(t, k = '') {
      el.textContent = t;
      el.className = `toast ${k}`;
    },
  };
}

/** Sends a control command and follows it until the coordinator has applied it. */
async function command(study, path, body, what, after) {
  let accepted;
  try {
    accepted = await api(`studies/${enc(study)}/${path}`, { method: 'POST', body: body ?? {} });
  } catch (e) {
    toast(`${what}: ${e.message}`, 'bad');
    throw e;
  }
  const t = toast(`${what}: sent`, accepted.coordinator_running ? '' : 'wait');
  if (!accepted.coordinator_running) {
    t.set(`${what}: waiting — ${accepted.message.replace(/^accepted: /, '')}`, 'wait');
    return accepted;
  }
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const c = await api(`studies/${enc(study)}/commands/${accepted.command}`).catch(() => null);
    if (c?.done_at) {
      t.set(`${what}: ${c.result}`, c.result.startsWith('refused') ? 'bad' : '');
      after?.();
      return c;
    }
  }
  t.set(`${what}: still pending — is a coordinator running this study?`, 'wait');
  return accepted;
}

// ---------- routing ----------

const main = document.getElementById('main');
const crumbs = document.getElementById('crumbs');
let current = null; // the open StudyView
let listTimer = null;
let firstRoute = true;

function route() {
  const m = location.hash.match(/^#\/s\/([^/]+)(?:\/t\/(\d+))?$/);
  if (m) {
    const name = decodeURIComponent(m[1]);
    const trial = m[2] == null ? null : Number(m[2]);
    if (current?.name !== name) {
      current?.close();
      clearInterval(listTimer);
      current = new StudyView(name);
    }
    current.showTrial(trial);
  } else {
    current?.close();
    current = null;
    showList();
  }
  firstRoute = false;
}

window.addEventListener('hashchange', route);
window.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && current?.detailOpen()) location.hash = `#/s/${enc(current.name)}`;
});

// ---------- study list ----------

async function showList() {
  crumbs.replaceChildren(h('span', {}, 'studies'));
  clearInterval(listTimer);
  const auto = firstRoute;
  const draw = async () => {
    let studies;
    try {
      ({ studies } = await api('studies'));
    } catch (e) {
      main.replaceChildren(h('p', { class: 'error' }, `Cannot load the studies: ${e.message}`));
      return;
    }
    if (auto && studies.length === 1 && location.hash === '') {
      location.replace(`#/s/${enc(studies[0].name)}`);
      return;
    }
    if (current) return;
    const rows = studies.map((s) =>
      h(
        'tr',
        { onclick: () => (location.hash = `#/s/${enc(s.name)}`) },
        h('td', {}, h('a', { href: `#/s/${enc(s.name)}` }, s.name)),
        h('td', {}, badge(s.paused ? 'paused' : s.state)),
        h('td', { class: 'num' }, `${s.finished} / ${s.budget}`),
        h('td', { class: 'num' }, s.counts.running),
        h('td', { class: 'num' }, s.counts.failed),
        h('td', { class: 'num' }, s.best ? fmt(s.best.value) : '–'),
        h('td', {}, `${s.metric} (${s.direction})`),
        h('td', { class: 'num' }, duration(s.elapsed_ms)),
      ),
    );
    main.replaceChildren(
      h(
        'div',
        { class: 'card' },
        h('h2', {}, 'Studies'),
        studies.length === 0
          ? h('p', { class: 'muted' }, 'No studies in this database yet. Start one with sweep run STUDY.toml.')
          : h(
              'div',
              { class: 'table-wrap' },
              h(
                'table',
                { class: 'study-list' },
                h(
                  'thead',
                  {},
                  h('tr', {}, ...['study', 'state', 'finished', 'running', 'failed', 'best', 'objective', 'elapsed'].map((c) => h('th', {}, c))),
                ),
                h('tbody', {}, rows),
              ),
            ),
      ),
    );
  };
  await draw();
  listTimer = setInterval(draw, 2000);
}

// ---------- one study ----------

/** How soon each part may be fetched again, at least; slower answers wait longer. */
const MIN_GAP = { summary: 500, table: 400, history: 700, curves: 500, front: 1000, points: 2500, importance: 2500, compare: 2500, detail: 400 };

class StudyView {
  constructor(name) {
    this.name = name;
    this.base = `studies/${enc(name)}`;
    this.table = { sort: 'number', order: 'desc', offset: 0, limit: 50, states: new Set(), valueMin: '', valueMax: '', param: '', paramMin: '', paramMax: '' };
    this.dirty = new Set();
    this.nextAt = {};
    this.timer = null;
    this.busy = false;
    this.pageNumbers = new Set();
    this.detail = null;
    this.closed = false;
    this.build();
    this.start();
  }

  build() {
    crumbs.replaceChildren(h('a', { href: '#/' }, 'studies'), ' / ', h('span', {}, this.name));
    this.el = {
      summary: h('section', { class: 'card summary', id: 'summary' }, h('p', { class: 'muted' }, 'Loading…')),
      history: h('div', { class: 'plot', id: 'plot-history' }),
      curves: h('div', { class: 'plot', id: 'plot-curves' }),
      parallel: h('div', { class: 'plot parallel', id: 'plot-parallel' }),
      importance: h('div', { class: 'imp', id: 'importance' }),
      slices: h('div', { class: 'slices', id: 'slices' }),
      compareControls: h('div', { class: 'filters', id: 'compare-controls' }),
      compare: h('div', { class: 'plot', id: 'plot-compare' }),
      compareTable: h('div', { class: 'compare-table', id: 'compare-table' }),
      trials: h('section', { class: 'card', id: 'trials' }),
      pointsNote: h('span', { class: 'hint' }),
      front: h('div', { class: 'plot', id: 'plot-front' }),
      frontControls: h('div', { class: 'filters', id: 'front-controls' }),
      frontNote: h('span', { class: 'hint' }),
      hypervolume: h('div', { class: 'plot', id: 'plot-hypervolume' }),
    };
    const card = (title, hint, body, wide = false) =>
      h('div', { class: `card${wide ? ' wide' : ''}` }, h('div', { class: 'card-head' }, h('h2', {}, title), hint), body);
    // Shown once the summary says the study has several objectives.
    this.el.frontCards = [
      card('Pareto front', this.el.frontNote, h('div', {}, this.el.frontControls, this.el.front)),
      card('Hypervolume history', h('span', { class: 'hint' }, 'of the feasible Pareto set after each complete trial'), this.el.hypervolume),
    ];
    this.el.frontCards.forEach((c) => (c.hidden = true));
    main.replaceChildren(
      this.el.summary,
      h(
        'div',
        { class: 'grid' },
        ...this.el.frontCards,
        card('Optimization history', h('span', { class: 'hint' }, 'each finished trial and the best so far · click a point to open it'), this.el.history),
        card('Intermediate values', h('span', { class: 'hint' }, 'best and latest trials · bold = best · dashed = pruned · click a curve'), this.el.curves),
        card('Parallel coordinates', this.el.pointsNote, this.el.parallel, true),
        card('Parameter importance', h('span', { class: 'hint' }, 'share of the objective’s variance'), this.el.importance),
        card('Slice plots', h('span', { class: 'hint' }, 'objective against each parameter'), this.el.slices),
        card(
          'Compare',
          h('span', { class: 'hint' }, 'mean ± sd per value of x, one line per group, over the other params (e.g. seeds)'),
          h('div', {}, this.el.compareControls, this.el.compare, this.el.compareTable),
          true,
        ),
      ),
      this.el.trials,
    );
    this.history = new HistoryPlot(this.el.history, (n) => this.open(n));
    this.curves = new CurvesPlot(this.el.curves, '', (n) => this.open(n));
    this.parallel = new ParallelPlot(this.el.parallel);
    this.slices = new SlicePlots(this.el.slices);
    this.comparePlot = new ComparePlot(this.el.compare);
    this.pareto = new ParetoPlot(this.el.front, (n) => this.open(n));
    this.hvPlot = new HypervolumePlot(this.el.hypervolume);
    this.buildTable();
  }

  async start() {
    const t0 = performance.now();
    // Everything the first screen needs is asked for at once; drawing waits for the summary.
    const first = {
      table: api(`${this.base}/trials?${this.query()}`),
      history: api(`${this.base}/history?format=columns`),
      curves: api(`${this.base}/curves?trials=40&points=200`),
    };
    Object.values(first).forEach((p) => p.catch(() => {}));
    try {
      this.study = await api(this.base);
    } catch (e) {
      this.el.summary.replaceChildren(h('p', { class: 'error' }, e.message));
      return;
    }
    this.curves.label = this.study.metric;
    this.renderSummary();
    this.connect();
    const front = this.several() ? [this.buildFront(), this.loadFront()] : [];
    await Promise.all([this.loadTable(first.table), this.loadHistory(first.history), this.loadCurves(first.curves), ...front]);
    // The page is usable: summary, table, history and curves are drawn.
    const ms = performance.now() - t0;
    document.body.dataset.ready = '1';
    document.body.dataset.readyMs = String(Math.round(ms));
    window.sweepReadyMs = ms;
    this.buildCompare();
    await Promise.all([this.loadPoints(), this.loadImportance(), this.loadCompare()]);
    document.body.dataset.complete = '1';
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  close() {
    this.closed = true;
    this.events?.close();
    clearTimeout(this.timer);
    clearInterval(this.ticker);
    this.history.destroy();
    this.curves.destroy();
    this.parallel.destroy();
    this.slices.destroy();
    this.comparePlot.destroy();
    this.pareto.destroy();
    this.hvPlot.destroy();
    this.closeDetail();
    delete document.body.dataset.ready;
    delete document.body.dataset.complete;
  }

  open(number) {
    location.hash = `#/s/${enc(this.name)}/t/${number}`;
  }

  // ----- live updates -----

  connect() {
    const url = `api/${this.base}/events${token ? `?token=${enc(token)}` : ''}`;
    const live = document.getElementById('live');
    this.events = new EventSource(url);
    this.events.onopen = () => {
      live.classList.add('on');
      live.title = 'live updates: connected';
    };
    this.events.onerror = () => {
      live.classList.remove('on');
      live.title = 'live updates: reconnecting';
    };
    for (const kind of ['insert', 'start', 'report', 'finish']) {
      this.events.addEventListener(kind, (e) => this.onChange(JSON.parse(e.data)));
    }
  }

  /** A committed change: mark what it affects; `flush` refetches just those parts. */
  onChange(c) {
    const marks = {
      insert: ['summary', 'table'],
      start: ['summary', 'table', 'curves'],
      report: ['curves'],
      finish: ['summary', 'table', 'history', 'curves', 'points', 'importance', 'compare', ...(this.several() ? ['front'] : [])],
    }[c.kind] ?? [];
    marks.forEach((m) => this.dirty.add(m));
    if (c.kind === 'report' && this.pageNumbers.has(c.number)) this.dirty.add('table');
    if (this.detail?.number === c.number) this.dirty.add('detail');
    this.schedule();
  }

  schedule() {
    if (this.timer || this.closed || this.dirty.size === 0) return;
    const now = performance.now();
    const soonest = Math.min(...[...this.dirty].map((k) => this.nextAt[k] ?? 0));
    this.timer = setTimeout(() => this.flush(), Math.max(100, soonest - now));
  }

  async flush() {
    this.timer = null;
    if (this.busy || this.closed) return this.schedule();
    const now = performance.now();
    const due = [...this.dirty].filter((k) => (this.nextAt[k] ?? 0) <= now);
    due.forEach((k) => this.dirty.delete(k));
    this.busy = true;
    const loaders = {
      summary: () => this.loadSummary(),
      table: () => this.loadTable(),
      history: () => this.loadHistory(),
      curves: () => this.loadCurves(),
      front: () => this.loadFront(),
      points: () => this.loadPoints(),
      importance: () => this.loadImportance(),
      compare: () => this.loadCompare(),
      detail: () => this.loadDetail(),
    };
    await Promise.all(
      due.map(async (k) => {
        const t0 = performance.now();
        await loaders[k]().catch((e) => console.warn(`refreshing ${k}:`, e));
        const took = performance.now() - t0;
        this.nextAt[k] = performance.now() + Math.max(MIN_GAP[k], 8 * took);
      }),
    );
    this.busy = false;
    this.schedule();
  }

  tick() {
    if (!this.study || this.study.state !== 'running') return;
    const el = document.getElementById('elapsed');
    if (el && this.study.elapsed_ms != null) el.textContent = duration(this.study.elapsed_ms + (Date.now() - this.fetchedAt));
  }

  // ----- summary -----

  async loadSummary() {
    const s = await api(this.base);
    this.study = { ...this.study, ...s };
    this.renderSummary();
  }

  renderSummary() {
    const s = this.study;
    this.fetchedAt = Date.now();
    const total = Math.max(1, s.budget);
    const bar = h(
      'div',
      { class: 'bar', title: `${s.finished} of ${s.budget} finished` },
      ['complete', 'pruned', 'failed'].map((st) => h('span', { style: `width:${(100 * Math.min(s.counts[st], total)) / total}%;background:var(--${st})` })),
      h('span', { style: `width:${(100 * Math.min(s.counts.running, total)) / total}%;background:var(--running);opacity:.45` }),
    );
    const chips = h(
      'div',
      { class: 'chips' },
      STATES.filter((st) => s.counts[st] > 0 || ['running', 'complete'].includes(st)).map((st) =>
        h('span', { class: `chip s-${st}` }, h('b', {}, s.counts[st]), ` ${st}`),
      ),
    );
    const best = s.best
      ? h(
          'div',
          {},
          h('div', { class: 'muted' }, `best ${s.metric}`),
          h('div', {}, h('span', { class: 'best-value', id: 'best-value' }, fmt(s.best.value)), ' ', h('a', { href: `#/s/${enc(s.name)}/t/${s.best.number}` }, `trial ${s.best.number}`)),
          h('div', { class: 'params mono' }, Object.entries(s.best.params).map(([k, v]) => h('span', {}, `${k} = ${paramText(v)}`))),
        )
      : h('div', { class: 'muted' }, 'No complete trial yet.');
    const waiting = s.pending_commands > 0 && !s.coordinator_running;
    const pause = s.paused
      ? h('button', { class: 'primary', onclick: () => command(s.name, 'resume', {}, 'resume', () => this.mark('summary')) }, 'Resume')
      : h('button', { onclick: () => command(s.name, 'pause', {}, 'pause', () => this.mark('summary')), title: 'start no new trials; running ones go on' }, 'Pause');
    this.el.summary.replaceChildren(
      h(
        'div',
        {},
        h('div', { class: 'title-row' }, h('h1', {}, s.name), badge(s.state), s.paused ? badge('paused') : null),
        h('div', { class: 'muted' }, `${s.direction} ${s.metric}`),
        bar,
        h('div', { class: 'muted' }, `${s.finished} / ${s.budget} trials finished`),
        chips,
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'elapsed'),
          h('dd', { id: 'elapsed' }, duration(s.elapsed_ms)),
          h('dt', {}, 'ETA'),
          h('dd', {}, s.state === 'complete' ? 'done' : s.paused ? 'paused' : duration(s.eta_ms)),
          h('dt', {}, 'started'),
          h('dd', {}, clock(s.created_at_ms)),
        ),
      ),
      h(
        'div',
        {},
        best,
        h(
          'div',
          { class: 'controls' },
          s.state === 'complete' ? null : pause,
          h('button', { onclick: () => this.enqueueForm() }, 'Enqueue…'),
          waiting ? h('span', { class: 'hint' }, `${s.pending_commands} command(s) wait for a coordinator to run this study`) : null,
        ),
      ),
    );
  }

  mark(part) {
    this.dirty.add(part);
    this.schedule();
  }

  // ----- plots -----

  async loadHistory(pending) {
    const h = await (pending ?? api(`${this.base}/history?format=columns`));
    if (this.closed) return;
    if (h.number.length === 0) {
      this.history.destroy();
      this.el.history.replaceChildren(Object.assign(document.createElement('p'), { className: 'muted', textContent: 'No finished trials yet.' }));
      this.el.history.dataset.points = '0';
      return;
    }
    if (!this.history.plot) this.el.history.replaceChildren();
    this.history.update(h);
  }

  /** Whether the study has several objectives (its Pareto cards and objective columns). */
  several() {
    return (this.study?.objectives?.length ?? 1) > 1;
  }

  /** The Pareto card's objective pickers (shown with three or more objectives). */
  buildFront() {
    this.el.frontCards.forEach((c) => (c.hidden = false));
    const objectives = this.study.objectives;
    this.frontAxes = [0, 1];
    if (objectives.length < 3) return;
    const picker = (k, id) =>
      h(
        'select',
        {
          id,
          onchange: (e) => {
            this.frontAxes[k] = Number(e.target.value);
            if (this.front) this.pareto.update(this.front, ...this.frontAxes);
          },
        },
        objectives.map((o, i) => h('option', { value: i, selected: i === this.frontAxes[k] }, o.metric)),
      );
    this.el.frontControls.replaceChildren(h('label', {}, 'x ', picker(0, 'front-x')), h('label', {}, 'y ', picker(1, 'front-y')));
  }

  async loadFront() {
    const f = await api(`${this.base}/front`);
    if (this.closed) return;
    this.front = f;
    const members = f.pareto.filter(Boolean).length;
    this.el.frontNote.textContent =
      f.number.length === 0
        ? 'no complete trial yet'
        : `${members} in the Pareto set${f.feasible ? '' : ' (none meets the constraints: the least violating)'} · hypervolume ${fmt(f.hypervolume)} · click a point`;
    if (f.number.length === 0) {
      this.el.front.dataset.points = '0';
      return;
    }
    this.pareto.update(f, ...this.frontAxes);
    this.hvPlot.update(f);
  }

  async loadCurves(pending) {
    const c = await (pending ?? api(`${this.base}/curves?trials=40&points=200`));
    if (this.closed) return;
    this.curves.update(c, this.study?.best?.number);
  }

  async loadPoints() {
    const p = await api(`${this.base}/points?max=2000`);
    if (this.closed) return;
    this.el.pointsNote.textContent =
      p.total > p.number.length
        ? `${p.number.length} of ${p.total} complete trials (the best and an even sample) · bright = best`
        : `${p.total} complete trials · bright = best`;
    if (p.number.length === 0) {
      this.el.parallel.dataset.lines = '0';
      this.el.slices.replaceChildren(h('p', { class: 'muted' }, 'No complete trials yet.'));
      return;
    }
    this.parallel.update(p, this.study.space, this.study.metric, this.study.direction === 'maximize');
    this.slices.update(p, this.study.space, this.study.metric);
  }

  async loadImportance() {
    const imp = await api(`${this.base}/importance`);
    if (this.closed) return;
    if (imp.params.length === 0) {
      this.el.importance.replaceChildren(h('p', { class: 'muted' }, 'Needs at least three complete trials.'));
      return;
    }
    this.el.importance.replaceChildren(
      ...imp.params.flatMap((p) => [
        h('span', { class: 'mono' }, p.param),
        h('div', { class: 'track' }, h('div', { class: 'fill', style: `width:${(100 * p.importance).toFixed(1)}%` })),
        h('span', { class: 'num' }, `${(100 * p.importance).toFixed(0)}%`),
      ]),
    );
  }

  // ----- comparison -----

  /** The x, group-by and metric pickers. Defaults, guessed from the space: on the x axis the
   * numeric param with the most grid values (a label budget, a model size); as lines the
   * categorical param with the fewest choices, text first (an init, an optimizer). Seeds are
   * what the means run over, so neither. */
  buildCompare() {
    const space = (this.study.space?.params ?? []).filter((p) => p.distribution?.type !== 'fixed');
    const params = space.map((p) => p.name);
    const chosen = space.filter((p) => p.name !== 'seed');
    const numeric = chosen.filter((p) => p.distribution.type === 'float' || p.distribution.type === 'int');
    const values = (p) => p.grid?.length ?? Infinity;
    const xParam = [...numeric].sort((a, b) => values(b) - values(a))[0] ?? chosen[0] ?? space[0];
    const x = xParam?.name;
    const categorical = chosen.filter((p) => p.name !== x && p.distribution.type === 'categorical' && p.distribution.choices.length >= 2);
    const text = (p) => (p.distribution.choices.every((c) => typeof c === 'string') ? 0 : 1);
    const group = [...categorical].sort((a, b) => text(a) - text(b) || a.distribution.choices.length - b.distribution.choices.length)[0]?.name;
    this.compare = { x, group: new Set(group ? [group] : []), metric: '' };
    if (!x) {
      this.el.compareControls.replaceChildren(h('p', { class: 'muted' }, 'No param varies in this study.'));
      return;
    }
    const xSelect = h(
      'select',
      { id: 'compare-x', onchange: (e) => ((this.compare.x = e.target.value), this.compare.group.delete(e.target.value), this.renderCompareControls(), this.loadCompare()) },
      params.map((n) => h('option', { value: n, selected: n === x }, n)),
    );
    this.compareMetric = h('select', { id: 'compare-metric', onchange: (e) => ((this.compare.metric = e.target.value), this.loadCompare()) });
    this.compareGroups = h('span', { class: 'filters' });
    this.compareParams = params;
    this.el.compareControls.replaceChildren(h('label', {}, 'x ', xSelect), h('span', {}, 'group by'), this.compareGroups, h('label', {}, 'metric ', this.compareMetric));
    this.renderCompareControls();
  }

  renderCompareControls() {
    const c = this.compare;
    this.compareGroups.replaceChildren(
      ...this.compareParams
        .filter((n) => n !== c.x)
        .map((n) =>
          h(
            'label',
            {},
            h('input', {
              type: 'checkbox',
              class: 'compare-group',
              value: n,
              checked: c.group.has(n),
              onchange: (e) => (e.target.checked ? c.group.add(n) : c.group.delete(n), this.loadCompare()),
            }),
            n,
          ),
        ),
    );
  }

  async loadCompare() {
    const c = this.compare;
    if (!c?.x) return;
    const q = new URLSearchParams({ x: c.x });
    if (c.group.size) q.set('group', [...c.group].join(','));
    if (c.metric) q.set('metric', c.metric);
    const r = await api(`${this.base}/compare?${q}`);
    if (this.closed) return;
    const chosen = r.metric;
    this.compareMetric.replaceChildren(...r.metrics.map((m) => h('option', { value: m, selected: m === chosen }, m)));
    this.comparePlot.update(r);
    const rows = r.series.flatMap((s) =>
      s.cells.map((k) =>
        h(
          'tr',
          {},
          h('td', {}, groupLabel(s.group)),
          h('td', { class: 'num' }, fmt(k.x)),
          h('td', { class: 'num' }, String(k.n)),
          h('td', { class: 'num' }, fmt(k.mean)),
          h('td', { class: 'num' }, fmt(k.std)),
          h('td', { class: 'num' }, `${fmt(k.min)} – ${fmt(k.max)}`),
        ),
      ),
    );
    this.el.compareTable.replaceChildren(
      rows.length
        ? h('table', {}, h('thead', {}, h('tr', {}, ...['group', r.x, 'n', `mean ${r.metric}`, 'sd', 'range'].map((t) => h('th', {}, t)))), h('tbody', {}, ...rows))
        : '',
    );
  }

  // ----- trial table -----

  buildTable() {
    const t = this.table;
    const stateButtons = STATES.map((st) =>
      h(
        'button',
        {
          class: `state-toggle s-${st}`,
          'aria-pressed': 'false',
          onclick: (e) => {
            t.states.has(st) ? t.states.delete(st) : t.states.add(st);
            e.currentTarget.setAttribute('aria-pressed', String(t.states.has(st)));
            t.offset = 0;
            this.loadTable();
          },
        },
        st,
      ),
    );
    let debounce = null;
    const input = (key, placeholder) =>
      h('input', {
        type: 'number',
        step: 'any',
        placeholder,
        oninput: (e) => {
          t[key] = e.target.value;
          t.offset = 0;
          clearTimeout(debounce);
          debounce = setTimeout(() => this.loadTable(), 300);
        },
      });
    this.paramSelect = h('select', {
      onchange: (e) => {
        t.param = e.target.value;
        t.offset = 0;
        this.loadTable();
      },
    });
    this.tableMsg = h('span', { class: 'hint' });
    this.thead = h('thead');
    this.tbody = h('tbody');
    this.pager = h('div', { class: 'pager' });
    this.el.trials.replaceChildren(
      h('div', { class: 'card-head' }, h('h2', {}, 'Trials'), this.tableMsg),
      h(
        'div',
        { class: 'filters' },
        h('span', { class: 'chips' }, stateButtons),
        h('label', {}, 'value', input('valueMin', 'min'), '–', input('valueMax', 'max')),
        h('label', {}, this.paramSelect, input('paramMin', 'min'), '–', input('paramMax', 'max')),
      ),
      h('div', { class: 'table-wrap' }, h('table', { id: 'trial-table' }, this.thead, this.tbody)),
      this.pager,
    );
  }

  query() {
    const t = this.table;
    const q = new URLSearchParams({ sort: t.sort, order: t.order, offset: t.offset, limit: t.limit });
    q.set('fields', 'number,state,value,metrics,params,last_step,reason,started_at,finished_at,attempt');
    if (t.states.size) q.set('state', [...t.states].join(','));
    if (t.valueMin !== '') q.set('value_min', t.valueMin);
    if (t.valueMax !== '') q.set('value_max', t.valueMax);
    if (t.param && t.paramMin !== '') q.set(`param.${t.param}.min`, t.paramMin);
    if (t.param && t.paramMax !== '') q.set(`param.${t.param}.max`, t.paramMax);
    return q;
  }

  async loadTable(pending) {
    const names = this.study?.params ?? [];
    if (this.paramSelect.options.length === 0 && names.length) {
      const numericNames = names.filter((n) => {
        const d = this.study.space?.params?.find((p) => p.name === n)?.distribution;
        return d && (d.type === 'float' || d.type === 'int');
      });
      this.paramSelect.replaceChildren(h('option', { value: '' }, 'param…'), ...numericNames.map((n) => h('option', { value: n }, n)));
    }
    let page;
    try {
      page = await (pending ?? api(`${this.base}/trials?${this.query()}`));
      this.tableMsg.textContent = '';
      this.tableMsg.className = 'hint';
    } catch (e) {
      this.tableMsg.textContent = e.message;
      this.tableMsg.className = 'hint error';
      return;
    }
    if (this.closed) return;
    this.renderTable(page, names);
  }

  renderTable(page, names) {
    const t = this.table;
    const shown = names.slice(0, 8);
    // With several objectives, a column for each (sorted by its final metric).
    const objectives = this.several() ? this.study.objectives.map((o) => o.metric) : [];
    const valueCols = objectives.length ? objectives.map((m) => [`metric:${m}`, m, 'num']) : [['value', this.study.metric, 'num']];
    const cols = [
      ['number', '#', 'num'],
      ['state', 'state'],
      ...valueCols,
      ...shown.map((n) => [`param:${n}`, n, 'num']),
      ['last_step', 'step', 'num'],
      ['started', 'started'],
      ['duration', 'duration', 'num'],
      ['reason', 'reason'],
    ];
    const sortable = new Set(['number', 'state', 'started', ...valueCols.map((c) => c[0]), ...shown.map((n) => `param:${n}`)]);
    this.thead.replaceChildren(
      h(
        'tr',
        {},
        cols.map(([key, label, cls]) => {
          const active = t.sort === key;
          return h(
            'th',
            {
              class: `${cls ?? ''} ${sortable.has(key) ? 'sortable' : ''}`,
              title: sortable.has(key) ? 'sort' : null,
              'aria-sort': active ? (t.order === 'asc' ? 'ascending' : 'descending') : null,
              onclick: sortable.has(key)
                ? () => {
                    t.order = active && t.order === 'asc' ? 'desc' : active ? 'asc' : key === 'number' ? 'desc' : 'asc';
                    t.sort = key;
                    t.offset = 0;
                    this.loadTable();
                  }
                : null,
            },
            label,
            active ? h('span', { class: 'arrow' }, t.order === 'asc' ? '▲' : '▼') : null,
          );
        }),
      ),
    );
    const best = this.study.best?.number;
    const now = Date.now();
    this.pageNumbers = new Set(page.trials.map((r) => r.number));
    this.tbody.replaceChildren(
      ...page.trials.map((r) =>
        h(
          'tr',
          { class: r.number === best ? 'best' : null, dataset: { number: r.number }, onclick: () => this.open(r.number) },
          h('td', { class: 'num' }, r.number),
          h('td', {}, badge(r.state)),
          objectives.length ? objectives.map((m) => h('td', { class: 'num' }, fmt(r.metrics?.[m]))) : h('td', { class: 'num' }, fmt(r.value)),
          shown.map((n) => h('td', { class: 'num mono' }, paramText(r.params[n]))),
          h('td', { class: 'num' }, r.last_step ?? '–'),
          h('td', {}, clock(r.started_at)),
          h('td', { class: 'num' }, r.started_at ? duration((r.finished_at ?? now) - r.started_at) : '–'),
          h('td', { class: 'reason', title: r.reason ?? '' }, r.reason ?? ''),
        ),
      ),
    );
    if (page.trials.length === 0) {
      this.tbody.replaceChildren(h('tr', {}, h('td', { colspan: cols.length, class: 'muted' }, 'No trials match.')));
    }
    const pages = Math.max(1, Math.ceil(page.total / t.limit));
    const at = Math.floor(t.offset / t.limit) + 1;
    const go = (offset) => () => {
      t.offset = Math.max(0, offset);
      this.loadTable();
    };
    this.pager.replaceChildren(
      h('span', { class: 'hint', id: 'rows' }, page.total ? `rows ${t.offset + 1}–${t.offset + page.trials.length} of ${page.total}` : '0 rows'),
      h('button', { onclick: go(0), disabled: at <= 1, title: 'first page' }, '«'),
      h('button', { onclick: go(t.offset - t.limit), disabled: at <= 1, title: 'previous page' }, '‹'),
      h('span', {}, `page ${at} of ${pages}`),
      h('button', { onclick: go(t.offset + t.limit), disabled: at >= pages, title: 'next page' }, '›'),
      h('button', { onclick: go((pages - 1) * t.limit), disabled: at >= pages, title: 'last page' }, '»'),
      h(
        'select',
        {
          title: 'rows per page',
          onchange: (e) => {
            t.limit = Number(e.target.value);
            t.offset = 0;
            this.loadTable();
          },
        },
        [25, 50, 100, 200].map((n) => h('option', { value: n, selected: n === t.limit }, `${n} / page`)),
      ),
    );
  }

  // ----- trial detail -----

  detailOpen() {
    return this.detail != null;
  }

  showTrial(number) {
    if (number == null) return this.closeDetail();
    if (this.detail?.number === number) return;
    this.closeDetail();
    const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const close = () => (location.hash = `#/s/${enc(this.name)}`);
    const backdrop = h('div', { class: 'backdrop', onclick: close });
    const drawer = h(
      'aside',
      { class: 'drawer', id: 'detail', role: 'dialog', 'aria-label': `trial ${number}` },
      h('div', { class: 'card-head' }, h('h2', {}, `Trial ${number}`), h('button', { onclick: close, title: 'close (Esc)' }, '✕')),
      body,
    );
    document.body.append(backdrop, drawer);
    this.detail = { number, body, backdrop, drawer, unplot: null };
    this.loadDetail();
  }

  closeDetail() {
    if (!this.detail) return;
    this.detail.unplot?.();
    this.detail.backdrop.remove();
    this.detail.drawer.remove();
    this.detail = null;
  }

  async loadDetail() {
    const d = this.detail;
    if (!d) return;
    let t;
    try {
      t = await api(`${this.base}/trials/${d.number}`);
    } catch (e) {
      d.body.replaceChildren(h('p', { class: 'error' }, e.message));
      return;
    }
    if (this.detail !== d) return;
    const metric = this.study?.metric;
    const kv = (pairs) => h('dl', { class: 'kv' }, pairs.filter(([, v]) => v != null && v !== '').flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const stop =
      t.state === 'running'
        ? h(
            'button',
            {
              class: 'danger',
              onclick: (e) => {
                e.currentTarget.disabled = true;
                command(this.name, `trials/${t.number}/stop`, {}, `stop trial ${t.number}`, () => this.mark('detail')).catch(() => {});
              },
            },
            'Stop trial',
          )
        : null;
    const plotBox = h('div', { class: 'plot', id: 'detail-plot' });
    const metricNames = [...new Set(t.reports.flatMap((r) => Object.keys(r)))].filter((k) => k !== 'step');
    const reportsTable = h(
      'div',
      { class: 'reports' },
      h(
        'table',
        {},
        h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'step'), metricNames.map((m) => h('th', { class: 'num' }, m)))),
        h('tbody', {}, t.reports.map((r) => h('tr', {}, h('td', { class: 'num' }, r.step), metricNames.map((m) => h('td', { class: 'num' }, fmt(r[m])))))),
      ),
    );
    d.unplot?.();
    d.unplot = null;
    d.body.replaceChildren(
      ...[
      h('div', { class: 'title-row' }, badge(t.state), t.value != null ? h('span', { class: 'best-value' }, fmt(t.value)) : null, stop),
      h(
        'section',
        {},
        kv([
          [metric, fmt(t.value)],
          ['attempt', t.attempt > 1 ? String(t.attempt) : null],
          ['re-runs', t.rerun_of != null ? `trial ${t.rerun_of}` : null],
          ['resumed from', t.resumed_from != null ? `step ${t.resumed_from}` : null],
          ['checkpoint', t.checkpoint_step != null ? `step ${t.checkpoint_step}` : null],
          ['paused', t.paused ? 'at a rung; resumes from its checkpoint if promoted' : null],
          ['device', t.device],
          ['last step', t.last_step],
          ['started', clock(t.started_at)],
          ['finished', t.finished_at ? clock(t.finished_at) : null],
          ['duration', t.started_at ? duration((t.finished_at ?? Date.now()) - t.started_at) : null],
        ]),
      ),
      t.reason ? h('section', {}, h('h2', {}, t.state === 'failed' ? 'Failure' : 'Reason'), h('pre', { id: 'detail-reason' }, t.reason)) : null,
      t.sampler_state?.fallback ? h('section', {}, h('h2', {}, 'Sampler'), h('p', { id: 'detail-sampler', class: 'error' }, t.sampler_state.fallback)) : null,
      h('section', {}, h('h2', {}, 'Params'), kv(Object.entries(t.params).map(([k, v]) => [k, h('span', { class: 'mono' }, paramText(v))]))),
      t.metrics ? h('section', {}, h('h2', {}, 'Final metrics'), kv(Object.entries(t.metrics).map(([k, v]) => [k, fmt(v)]))) : null,
      h('section', {}, h('h2', {}, `Reports (${t.reports.length})`), t.reports.length ? [plotBox, reportsTable] : h('p', { class: 'muted' }, 'None yet.')),
      t.stderr_tail ? h('section', {}, h('h2', {}, 'stderr (last lines)'), h('pre', { id: 'detail-stderr' }, t.stderr_tail)) : null,
      ].filter(Boolean),
    );
    if (t.reports.length) d.unplot = reportsPlot(plotBox, t.reports, metric);
  }

  // ----- enqueue -----

  enqueueForm() {
    const space = this.study.space?.params ?? [];
    const start = this.study.best?.params ?? {};
    const inputs = new Map();
    const rows = space.map((p) => {
      const d = p.distribution;
      let input;
      if (d.type === 'categorical') {
        input = h('select', {}, d.choices.map((c, i) => h('option', { value: i, selected: String(start[p.name]) === String(c) }, String(c))));
      } else if (d.type === 'fixed') {
        input = h('input', { type: 'text', value: JSON.stringify(d.value), disabled: true });
      } else {
        const v = start[p.name] ?? (d.log ? Math.sqrt(d.low * d.high) : (d.low + d.high) / 2);
        input = h('input', { type: 'number', step: 'any', min: d.low, max: d.high, value: d.type === 'int' ? Math.round(v) : v });
      }
      inputs.set(p.name, input);
      const note =
        d.type === 'categorical'
          ? ''
          : d.type === 'fixed'
            ? 'fixed'
            : `${d.type} ${d.low} … ${d.high}${d.log ? ', log' : ''}${d.step != null && d.step !== 1 ? `, step ${d.step}` : ''}`;
      const when = (p.conditions ?? []).map((c) => `when ${c.parent} ∈ {${c.values.join(', ')}}`).join('; ');
      return [h('label', { class: 'mono' }, p.name), h('div', {}, input, ' ', h('span', { class: 'note' }, [note, when].filter(Boolean).join(' · ')))];
    });
    const value = (p) => {
      const d = p.distribution;
      const el = inputs.get(p.name);
      if (d.type === 'categorical') return d.choices[Number(el.value)];
      if (d.type === 'fixed') return d.value;
      return el.value === '' ? null : Number(el.value);
    };
    // Conditional params: only the active ones are sent (as a study file's [[enqueue]]).
    const active = () => {
      const chosen = {};
      for (const p of space) {
        const on = (p.conditions ?? []).every((c) => c.parent in chosen && c.values.some((v) => String(v) === String(chosen[c.parent])));
        inputs.get(p.name).disabled = !on || p.distribution.type === 'fixed';
        if (on) chosen[p.name] = value(p);
      }
      return chosen;
    };
    inputs.forEach((el) => el.addEventListener('change', active));
    active();
    const msg = h('p', { class: 'hint' }, 'Checked like the study file’s [[enqueue]] entries; it runs before new sampled trials and counts toward the budget.');
    const close = () => {
      backdrop.remove();
      drawer.remove();
    };
    const submit = async () => {
      msg.className = 'hint';
      msg.textContent = 'sending…';
      try {
        await command(this.name, 'enqueue', { params: active() }, 'enqueue', () => this.mark('table'));
        close();
      } catch (e) {
        msg.className = 'error';
        msg.textContent = e.message;
      }
    };
    const backdrop = h('div', { class: 'backdrop', onclick: close });
    const drawer = h(
      'aside',
      { class: 'drawer', id: 'enqueue', role: 'dialog', 'aria-label': 'enqueue a configuration' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Enqueue a configuration'), h('button', { onclick: close }, '✕')),
      h('div', { class: 'form' }, rows.flat()),
      msg,
      h('div', { class: 'controls' }, h('button', { class: 'primary', onclick: submit }, 'Enqueue'), h('button', { onclick: close }, 'Cancel')),
    );
    document.body.append(backdrop, drawer);
  }
}

// Re-draw the plots in the other theme's colours when the system switches.
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
  if (!current) return;
  current.history.destroy();
  ['history', 'curves', 'points'].forEach((k) => current.mark(k));
});

route();
