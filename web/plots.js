// The study page's plots. uPlot (vendored, web/vendor) draws the history, learning curves,
// slices and the trial's reports; parallel coordinates are drawn on a canvas here, since
// uPlot has no such chart. Every plot reads its colours from the CSS theme.

const uPlot = window.uPlot;

/** Theme colours from the CSS variables (light or dark). */
export function theme() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  return {
    fg: v('--fg'),
    muted: v('--muted'),
    grid: v('--grid'),
    accent: v('--accent'),
    card: v('--card'),
    state: {
      running: v('--running'),
      waiting: v('--waiting'),
      complete: v('--complete'),
      pruned: v('--pruned'),
      failed: v('--failed'),
      interrupted: v('--interrupted'),
    },
  };
}

function axis(t, label, extra = {}) {
  return {
    stroke: t.muted,
    grid: { stroke: t.grid, width: 1 },
    ticks: { stroke: t.grid, width: 1 },
    label,
    labelFont: '12px system-ui, sans-serif',
    font: '11px system-ui, sans-serif',
    ...extra,
  };
}

/** Tick steps for whole-number axes (trial numbers, steps): no 0.5 ticks. */
const WHOLE = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2500, 5e3, 1e4, 2e4, 25e3, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6];

function scatter(color, size = 5) {
  return { stroke: color, fill: color, paths: () => null, points: { show: true, size, stroke: color, fill: color, width: 0 } };
}

/** Numbers shown compactly: 4 significant digits, exponent for the very large or small. */
export function fmt(v) {
  if (v == null || Number.isNaN(v)) return '–';
  if (typeof v !== 'number') return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
  return String(Number(v.toPrecision(5)));
}

function sizeOf(el, height) {
  return { width: Math.max(200, el.clientWidth), height };
}

/** Keeps a uPlot at its container's width. The observer also fires once at the start, with the
 * size the plot was just drawn at: redrawing then would draw 100,000 points twice. */
function follow(el, plot, height) {
  let width = plot.width;
  const ro = new ResizeObserver((entries) => {
    const w = Math.max(200, Math.round(entries[0].contentRect.width));
    if (w === width) return;
    width = w;
    plot.setSize({ width: w, height });
  });
  ro.observe(el);
  return () => ro.disconnect();
}

/**
 * Optimization history: each finished trial's value by state, and the best so far as a
 * step line. `data` is the history endpoint's columns. Clicking a point opens its trial.
 */
export class HistoryPlot {
  constructor(el, onPick) {
    this.el = el;
    this.onPick = onPick;
    this.plot = null;
    // Read now, while the page is laid out anyway: reading it when the data arrives would
    // force a layout of everything drawn in between.
    this.width = el.clientWidth;
  }

  update(h) {
    const n = h.number.length;
    const by = (state) => {
      const out = new Array(n);
      for (let i = 0; i < n; i++) out[i] = h.state[i] === state ? h.value[i] : null;
      return out;
    };
    const data = [h.number, by('complete'), by('pruned'), by('failed'), h.best];
    this.el.dataset.points = String(n);
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    const t = theme();
    const size = n > 20000 ? 2.5 : n > 2000 ? 3.5 : 5;
    const opts = {
      width: Math.max(200, this.width || this.el.clientWidth),
      height: 260,
      scales: { x: { time: false } },
      legend: { live: true },
      cursor: { drag: { x: true, y: true, uni: 30 } },
      axes: [axis(t, 'trial', { incrs: WHOLE }), axis(t, h.metric, { size: 60 })],
      series: [
        { label: 'trial' },
        { label: 'complete', ...scatter(t.state.complete, size), value: (u, v) => fmt(v) },
        { label: 'pruned', ...scatter(t.state.pruned, size), value: (u, v) => fmt(v) },
        { label: 'failed', ...scatter(t.state.failed, size), value: (u, v) => fmt(v) },
        {
          label: 'best so far',
          stroke: t.accent,
          width: 2,
          paths: uPlot.paths.stepped({ align: 1 }),
          points: { show: false },
          spanGaps: true,
          value: (u, v) => fmt(v),
        },
      ],
    };
    this.plot = new uPlot(opts, data, this.el);
    this.unfollow = follow(this.el, this.plot, 260);
    this.plot.over.addEventListener('click', () => {
      const i = this.plot.cursor.idx;
      if (i != null) this.onPick(this.plot.data[0][i]);
    });
  }

  destroy() {
    this.unfollow?.();
    this.plot?.destroy();
    this.plot = null;
  }
}

/**
 * Learning curves (the objective by step) of the best and latest trials. Pruned trials are
 * dashed and end in a marker; running ones are drawn thicker. Hover names the trial; a click
 * opens it.
 */
export class CurvesPlot {
  constructor(el, label, onPick) {
    this.el = el;
    this.label = label;
    this.onPick = onPick;
    this.plot = null;
    this.focus = null;
    this.width = el.clientWidth; // see HistoryPlot
  }

  update(c, best) {
    const curves = c.curves.filter((k) => k.points.length > 0);
    const steps = [...new Set(curves.flatMap((k) => k.points.map((p) => p[0])))].sort((a, b) => a - b);
    const index = new Map(steps.map((s, i) => [s, i]));
    let points = 0;
    const ys = curves.map((k) => {
      const y = new Array(steps.length).fill(null);
      for (const [s, v] of k.points) {
        y[index.get(s)] = v;
        if (v != null) points++;
      }
      return y;
    });
    this.el.dataset.points = String(points);
    this.el.dataset.curves = String(curves.length);
    if (this.plot) this.width = this.plot.width; // follows resizes
    this.destroy();
    if (curves.length === 0) {
      this.el.replaceChildren(Object.assign(document.createElement('p'), { className: 'muted', textContent: 'No reports yet.' }));
      return;
    }
    this.el.replaceChildren();
    const t = theme();
    const series = curves.map((k) => {
      // The best trial in the text colour, so it stands out from every state's colour.
      const color = k.number === best ? t.fg : t.state[k.state] ?? t.muted;
      const pruned = k.state === 'pruned';
      const last = k.points.length - 1;
      return {
        label: `trial ${k.number}`,
        stroke: color,
        width: k.number === best ? 2.5 : k.state === 'running' ? 2 : 1.25,
        dash: pruned ? [5, 4] : undefined,
        spanGaps: true,
        alpha: k.state === 'complete' && k.number !== best ? 0.7 : 1,
        // A pruned curve ends in a hollow marker where it was stopped.
        points: {
          show: pruned,
          size: 7,
          stroke: color,
          fill: t.card,
          width: 2,
          filter: pruned ? () => [index.get(k.points[last][0])] : null,
        },
      };
    });
    const opts = {
      width: Math.max(200, this.width),
      height: 260,
      scales: { x: { time: false } },
      legend: { show: false },
      cursor: { focus: { prox: 24 }, drag: { x: true, y: true, uni: 30 } },
      focus: { alpha: 0.25 },
      axes: [axis(t, 'step', { incrs: WHOLE }), axis(t, this.label, { size: 60 })],
      series: [{ label: 'step' }, ...series],
      hooks: {
        setSeries: [(u, si) => (this.focus = si ? curves[si - 1] : null)],
        setCursor: [(u) => this.tip(u, steps)],
      },
    };
    this.plot = new uPlot(opts, [steps, ...ys], this.el);
    this.unfollow = follow(this.el, this.plot, 260);
    this.tipEl = document.createElement('div');
    this.tipEl.className = 'plot-tip';
    this.plot.over.appendChild(this.tipEl);
    this.plot.over.addEventListener('click', () => this.focus && this.onPick(this.focus.number));
  }

  tip(u, steps) {
    const k = this.focus;
    const i = u.cursor.idx;
    if (!k || i == null || u.cursor.left < 0) {
      this.tipEl.style.display = 'none';
      return;
    }
    const si = u.series.findIndex((s) => s.label === `trial ${k.number}`);
    const v = si > 0 ? u.data[si][i] : null;
    this.tipEl.textContent = `trial ${k.number} (${k.state}) · step ${steps[i]}: ${fmt(v)}`;
    this.tipEl.style.display = 'block';
    this.tipEl.style.left = `${Math.min(u.cursor.left + 10, u.over.clientWidth - 200)}px`;
    this.tipEl.style.top = `${Math.max(0, u.cursor.top - 28)}px`;
  }

  destroy() {
    this.unfollow?.();
    this.plot?.destroy();
    this.plot = null;
  }
}

/** Value of a param as a number on its axis: categorical choices by index. */
function numeric(dist, v) {
  if (v == null) return null;
  if (dist?.type === 'categorical') {
    const i = dist.choices.findIndex((c) => c === v || String(c) === String(v));
    return i < 0 ? null : i;
  }
  return typeof v === 'number' ? v : null;
}

/** One small scatter per param: the objective against the param's value. */
export class SlicePlots {
  constructor(el) {
    this.el = el;
    this.plots = [];
  }

  update(points, space, metric) {
    this.destroy();
    this.el.replaceChildren();
    const t = theme();
    const dists = new Map((space?.params ?? []).map((p) => [p.name, p.distribution]));
    for (const name of points.params) {
      const dist = dists.get(name);
      if (dist?.type === 'fixed') continue;
      const pairs = [];
      points.columns[name].forEach((v, i) => {
        const x = numeric(dist, v);
        if (x != null) pairs.push([x, points.value[i]]);
      });
      pairs.sort((a, b) => a[0] - b[0]);
      const box = document.createElement('div');
      box.className = 'slice';
      this.el.appendChild(box);
      const categorical = dist?.type === 'categorical';
      const xAxis = categorical
        ? axis(t, name, {
            splits: () => dist.choices.map((_, i) => i),
            values: () => dist.choices.map(String),
          })
        : axis(t, name);
      const log = (dist?.type === 'float' || dist?.type === 'int') && dist.log;
      const opts = {
        ...sizeOf(box, 190),
        scales: {
          x: categorical ? { time: false, range: [-0.5, dist.choices.length - 0.5] } : { time: false, distr: log ? 3 : 1 },
        },
        legend: { show: false },
        cursor: { show: false },
        axes: [xAxis, axis(t, metric, { size: 50 })],
        series: [{}, { ...scatter(t.accent, pairs.length > 3000 ? 2.5 : 4), alpha: 0.7 }],
      };
      const plot = new uPlot(opts, [pairs.map((p) => p[0]), pairs.map((p) => p[1])], box);
      this.plots.push([plot, follow(box, plot, 190)]);
    }
  }

  destroy() {
    for (const [plot, unfollow] of this.plots) {
      unfollow();
      plot.destroy();
    }
    this.plots = [];
  }
}

/**
 * Parallel coordinates: one vertical axis per param and one for the objective; each complete
 * trial is a line across them, coloured from the best (accent, drawn last) to the worst (faint).
 */
export class ParallelPlot {
  constructor(el) {
    this.el = el;
    this.canvas = document.createElement('canvas');
    el.replaceChildren(this.canvas);
    this.ro = new ResizeObserver(() => this.data && this.draw());
    this.ro.observe(el);
  }

  update(points, space, metric, maximize) {
    this.data = { points, space, metric, maximize };
    this.draw();
  }

  draw() {
    const { points, space, metric, maximize } = this.data;
    const t = theme();
    const dists = new Map((space?.params ?? []).map((p) => [p.name, p.distribution]));
    const names = points.params.filter((n) => dists.get(n)?.type !== 'fixed');
    const values = points.value;
    const axes = names.map((name) => this.axisFor(name, dists.get(name), points.columns[name]));
    axes.push(this.axisFor(metric, { type: 'float', log: false }, values, true));
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(300, this.el.clientWidth);
    const height = 300;
    this.canvas.width = width * dpr;
    this.canvas.height = height * dpr;
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const g = this.canvas.getContext('2d');
    g.scale(dpr, dpr);
    g.clearRect(0, 0, width, height);
    const pad = { left: 50, right: 70, top: 28, bottom: 26 };
    const span = (width - pad.left - pad.right) / Math.max(1, axes.length - 1);
    const xOf = (i) => pad.left + i * span;
    const yOf = (u) => pad.top + (1 - u) * (height - pad.top - pad.bottom);
    this.el.dataset.lines = String(values.length);
    // Worst first, so the best lines are on top.
    const order = values.map((_, i) => i).sort((a, b) => (maximize ? values[a] - values[b] : values[b] - values[a]));
    const n = order.length;
    // Few lines can be bold; thousands must be faint to stay readable. The best few (2%, 3 to
    // 20 lines) stand out in the accent colour.
    const floor = n < 30 ? 0.35 : n < 300 ? 0.15 : 0.05;
    const ceiling = n < 300 ? 0.6 : 0.3;
    const bright = Math.max(3, Math.min(20, Math.round(n * 0.02)));
    order.forEach((i, rank) => {
      const q = n > 1 ? rank / (n - 1) : 1; // 0 = worst, 1 = best
      const top = n - rank <= bright;
      g.strokeStyle = top ? t.accent : t.muted;
      g.lineWidth = top ? 1.5 : 1;
      g.globalAlpha = top ? 0.9 : floor + (ceiling - floor) * q;
      g.beginPath();
      let pen = false;
      axes.forEach((a, k) => {
        const u = a.unit(k === axes.length - 1 ? values[i] : points.columns[a.name][i]);
        if (u == null) {
          pen = false;
          return;
        }
        if (pen) g.lineTo(xOf(k), yOf(u));
        else g.moveTo(xOf(k), yOf(u));
        pen = true;
      });
      g.stroke();
    });
    g.globalAlpha = 1;
    g.font = '11px system-ui, sans-serif';
    axes.forEach((a, k) => {
      const x = xOf(k);
      g.strokeStyle = t.fg;
      g.lineWidth = 1;
      g.beginPath();
      g.moveTo(x, yOf(0));
      g.lineTo(x, yOf(1));
      g.stroke();
      g.fillStyle = t.fg;
      g.textAlign = 'center';
      g.fillText(a.name, Math.min(Math.max(x, 30), width - 30), 14);
      g.fillStyle = t.muted;
      g.textAlign = k === axes.length - 1 ? 'left' : 'right';
      const dx = k === axes.length - 1 ? 4 : -4;
      for (const [u, label] of a.ticks) g.fillText(label, x + dx, yOf(u) + 4);
    });
  }

  /** Maps a column's values to [0, 1] on its axis, with tick labels. */
  axisFor(name, dist, column, objective = false) {
    if (dist?.type === 'categorical') {
      const k = dist.choices.length;
      const unit = (v) => {
        const i = numeric(dist, v);
        return i == null ? null : k > 1 ? i / (k - 1) : 0.5;
      };
      return { name, unit, ticks: dist.choices.map((c, i) => [k > 1 ? i / (k - 1) : 0.5, String(c)]) };
    }
    let lo = dist && !objective ? dist.low : Infinity;
    let hi = dist && !objective ? dist.high : -Infinity;
    if (lo == null || hi == null || objective) {
      for (const v of column) if (typeof v === 'number' && Number.isFinite(v)) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
    }
    if (!Number.isFinite(lo)) (lo = 0), (hi = 1);
    const log = dist?.log && lo > 0;
    const f = log ? Math.log : (x) => x;
    const [a, b] = [f(lo), f(hi)];
    const unit = (v) => (typeof v === 'number' ? (b > a ? (f(v) - a) / (b - a) : 0.5) : null);
    return { name, unit, ticks: [[0, fmt(lo)], [1, fmt(hi)]] };
  }

  destroy() {
    this.ro.disconnect();
  }
}

/** A trial's reported metrics by step (the detail view). */
export function reportsPlot(el, reports, metric) {
  const t = theme();
  const names = [...new Set(reports.flatMap((r) => Object.keys(r)))].filter((k) => k !== 'step');
  names.sort((a, b) => (a === metric ? -1 : b === metric ? 1 : a.localeCompare(b)));
  const palette = [t.accent, t.state.pruned, t.state.complete, t.state.interrupted, t.state.failed, t.muted];
  const data = [reports.map((r) => r.step), ...names.map((n) => reports.map((r) => r[n] ?? null))];
  const opts = {
    ...sizeOf(el, 220),
    scales: { x: { time: false }, ...Object.fromEntries(names.map((n, i) => [n, { auto: true }])) },
    axes: [axis(t, 'step', { incrs: WHOLE }), axis(t, names[0] ?? '', { scale: names[0], size: 60 })],
    series: [
      { label: 'step' },
      ...names.map((n, i) => ({ label: n, scale: n, stroke: palette[i % palette.length], width: i === 0 ? 2 : 1, spanGaps: true, value: (u, v) => fmt(v) })),
    ],
  };
  const plot = new uPlot(opts, data, el);
  const unfollow = follow(el, plot, 220);
  return () => {
    unfollow();
    plot.destroy();
  };
}

/** Line colours for the comparison view's groups (Tableau 10, readable on light and dark). */
const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

/** A group's name from its params' values: `init=pretrain, lr=0.002` (or `all trials`). */
export function groupLabel(group) {
  const parts = Object.entries(group).map(([k, v]) => `${k}=${v == null ? '(inactive)' : v}`);
  return parts.length ? parts.join(', ') : 'all trials';
}

/**
 * The comparison view: per group, the metric's mean at each value of the x param as a line,
 * with a band of ± one standard deviation over the trials the cell averages. Numeric x values
 * sit on a numeric axis (logarithmic when they span 20x or more), others side by side.
 */
export class ComparePlot {
  constructor(el) {
    this.el = el;
    this.plot = null;
  }

  update(c) {
    this.destroy();
    this.el.replaceChildren();
    const cells = c.series.flatMap((s) => s.cells);
    this.el.dataset.series = String(c.series.length);
    this.el.dataset.cells = String(cells.length);
    if (cells.length === 0) {
      this.el.append(Object.assign(document.createElement('p'), { className: 'muted', textContent: 'No complete trial has this param and metric yet.' }));
      return;
    }
    const key = (v) => JSON.stringify(v);
    const numericX = cells.every((k) => typeof k.x === 'number');
    const xs = [...new Map(cells.map((k) => [key(k.x), k.x])).values()];
    xs.sort((a, b) => (numericX ? a - b : String(a).localeCompare(String(b))));
    const index = new Map(xs.map((x, i) => [key(x), i]));
    const positive = numericX && xs[0] > 0;
    const log = positive && xs[xs.length - 1] / xs[0] >= 20;
    const t = theme();
    const data = [numericX ? xs : xs.map((_, i) => i)];
    const series = [{ label: c.x }];
    const bands = [];
    c.series.forEach((s, si) => {
      const color = PALETTE[si % PALETTE.length];
      const column = (f) => {
        const y = new Array(xs.length).fill(null);
        for (const k of s.cells) y[index.get(key(k.x))] = f(k);
        return y;
      };
      const mean = data.length;
      data.push(column((k) => k.mean), column((k) => k.mean + (k.std ?? 0)), column((k) => k.mean - (k.std ?? 0)));
      series.push(
        { label: groupLabel(s.group), stroke: color, width: 2, spanGaps: true, points: { show: true, size: 6, fill: color }, value: (u, v) => fmt(v) },
        { label: `${groupLabel(s.group)} +sd`, stroke: 'transparent', points: { show: false }, spanGaps: true, show: true },
        { label: `${groupLabel(s.group)} -sd`, stroke: 'transparent', points: { show: false }, spanGaps: true, show: true },
      );
      bands.push({ series: [mean + 1, mean + 2], fill: `${color}33` });
    });
    const xAxis = numericX
      ? axis(t, c.x, { splits: () => xs, values: () => xs.map(fmt) })
      : axis(t, c.x, { splits: () => xs.map((_, i) => i), values: () => xs.map(String) });
    const opts = {
      ...sizeOf(this.el, 280),
      scales: { x: numericX ? { time: false, distr: log ? 3 : 1 } : { time: false, range: [-0.5, xs.length - 0.5] } },
      legend: { show: true, live: false, markers: { show: true } },
      cursor: { drag: { x: false, y: false } },
      axes: [xAxis, axis(t, c.metric, { size: 60 })],
      series,
      bands,
    };
    this.plot = new uPlot(opts, data, this.el);
    // The band edges are drawn through the bands; their legend entries would only repeat.
    this.plot.root.querySelectorAll('.u-legend .u-series').forEach((row) => {
      if (/ [+-]sd$/.test(row.textContent.trim())) row.style.display = 'none';
    });
    this.unfollow = follow(this.el, this.plot, 280);
  }

  destroy() {
    this.unfollow?.();
    this.plot?.destroy();
    this.plot = null;
  }
}

const COMPACT = new Intl.NumberFormat('en', { notation: 'compact', maximumSignificantDigits: 4 });

/** Axis ticks short enough for parameter counts: 1.2M, 400K, 0.615. */
function compact(u, splits) {
  return splits.map((v) => (v == null ? '' : COMPACT.format(v)));
}

/**
 * The Pareto-front card: every complete trial as a point of two objectives (`xi`, `yi` index
 * `front.objectives`). Members of the Pareto set are bright, dominated trials faded, trials
 * that break a constraint faded and hollow; the non-dominated feasible points of the two shown
 * objectives are joined by the staircase that bounds what they dominate. A click opens the
 * nearest trial within a few pixels. `front` is `/api/studies/NAME/front`.
 */
export class ParetoPlot {
  constructor(el, onPick) {
    this.el = el;
    this.onPick = onPick;
    this.plot = null;
    // Where a trial is drawn, for the browser test to click it.
    el.pointOf = (number) => this.pointOf(number);
  }

  update(front, xi, yi) {
    this.destroy();
    this.el.replaceChildren();
    const [ox, oy] = [front.objectives[xi], front.objectives[yi]];
    const [xs, ys] = [front.values[ox.metric], front.values[oy.metric]];
    const order = front.number.map((_, i) => i).filter((i) => Number.isFinite(xs[i]) && Number.isFinite(ys[i]));
    order.sort((a, b) => xs[a] - xs[b] || ys[a] - ys[b]);
    // The staircase: feasible points no other feasible one beats in both shown objectives.
    const sign = (o) => (o.direction === 'maximize' ? -1 : 1);
    const [sx, sy] = [sign(ox), sign(oy)];
    const byX = order.filter((i) => front.meets_constraints[i]);
    if (sx < 0) byX.reverse(); // best x first
    const stair = new Set();
    let bestY = Infinity;
    for (const i of byX) {
      if (sy * ys[i] < bestY) {
        bestY = sy * ys[i];
        stair.add(i);
      }
    }
    const column = (keep) => order.map((i) => (keep(i) ? ys[i] : null));
    const data = [
      order.map((i) => xs[i]),
      column((i) => front.pareto[i]),
      column((i) => !front.pareto[i] && front.meets_constraints[i]),
      column((i) => !front.meets_constraints[i]),
      column((i) => stair.has(i)),
    ];
    this.numbers = order.map((i) => front.number[i]);
    this.el.dataset.points = String(order.length);
    this.el.dataset.pareto = String(order.filter((i) => front.pareto[i]).length);
    const t = theme();
    const size = order.length > 2000 ? 3 : 6;
    const label = (o) => `${o.metric} (${o.direction === 'maximize' ? 'max' : 'min'})`;
    const faded = (color) => ({ ...scatter(color, size), alpha: 0.35 });
    const opts = {
      ...sizeOf(this.el, 280),
      scales: { x: { time: false } },
      legend: { live: false },
      cursor: { drag: { x: true, y: true, uni: 30 }, points: { show: false } },
      axes: [axis(t, label(ox), { values: compact }), axis(t, label(oy), { size: 60, values: compact })],
      series: [
        { label: ox.metric },
        { label: 'Pareto set', ...scatter(t.accent, size + 2) },
        { label: 'dominated', ...faded(t.muted) },
        { label: 'infeasible', ...faded(t.state.failed), points: { show: true, size, stroke: t.state.failed, fill: 'transparent', width: 1 } },
        {
          label: 'front',
          stroke: t.accent,
          width: 1.5,
          spanGaps: true,
          // The bound of the dominated region: a point dominates towards worse x, so between two
          // points the level of the one with the better x holds.
          paths: uPlot.paths.stepped({ align: sx > 0 ? 1 : -1 }),
          points: { show: false },
        },
      ],
    };
    this.plot = new uPlot(opts, data, this.el);
    this.unfollow = follow(this.el, this.plot, 280);
    this.plot.over.addEventListener('click', () => {
      const n = this.nearest(this.plot.cursor.left, this.plot.cursor.top);
      if (n != null) this.onPick(n);
    });
  }

  /** The trial drawn nearest to (left, top) in the plot's CSS pixels, within 12 of them. */
  nearest(left, top) {
    const u = this.plot;
    if (!u || left == null || left < 0) return null;
    let best = null;
    let bestD = 144;
    for (let k = 0; k < this.numbers.length; k++) {
      const y = u.data[1][k] ?? u.data[2][k] ?? u.data[3][k];
      const dx = u.valToPos(u.data[0][k], 'x') - left;
      const dy = u.valToPos(y, 'y') - top;
      if (dx * dx + dy * dy < bestD) {
        bestD = dx * dx + dy * dy;
        best = this.numbers[k];
      }
    }
    return best;
  }

  /** Where trial `number` is drawn, in CSS pixels of the page (for tests and tooltips). */
  pointOf(number) {
    const k = this.numbers?.indexOf(number) ?? -1;
    if (k < 0) return null;
    const u = this.plot;
    const y = u.data[1][k] ?? u.data[2][k] ?? u.data[3][k];
    const box = u.over.getBoundingClientRect();
    return { x: box.left + u.valToPos(u.data[0][k], 'x'), y: box.top + u.valToPos(y, 'y') };
  }

  destroy() {
    this.unfollow?.();
    this.plot?.destroy();
    this.plot = null;
  }
}

/** The hypervolume of the feasible Pareto set after each complete trial, as a step line. */
export class HypervolumePlot {
  constructor(el) {
    this.el = el;
    this.plot = null;
  }

  update(front) {
    const data = [front.number, front.hypervolume_so_far];
    this.el.dataset.points = String(front.number.length);
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    const t = theme();
    const opts = {
      ...sizeOf(this.el, 220),
      scales: { x: { time: false } },
      legend: { live: true },
      axes: [axis(t, 'trial', { incrs: WHOLE }), axis(t, 'hypervolume', { size: 60 })],
      series: [
        { label: 'trial' },
        { label: 'hypervolume', stroke: t.accent, width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false }, value: (u, v) => fmt(v) },
      ],
    };
    this.plot = new uPlot(opts, data, this.el);
    this.unfollow = follow(this.el, this.plot, 220);
  }

  destroy() {
    this.unfollow?.();
    this.plot?.destroy();
    this.plot = null;
  }
}
