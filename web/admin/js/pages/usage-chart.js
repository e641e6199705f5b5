// A small bar chart as inline SVG (no library): one bar per day, an optional stepped line (e.g.
// seats licensed) over them, a y axis with round ticks and a few date labels. Accessible as an
// image with a <title> and a <desc> that say what it shows in words; each bar has its own
// <title> (a tooltip). Not a page: pages/index.js does not list it.

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element: presentation attributes only (the CSP blocks style attributes). */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** The smallest "round" number (1, 2 or 5 × 10^k) at or above `v`; small counts stay whole. */
export function niceMax(v) {
  if (!(v > 0)) return 1;
  if (v <= 5) return Math.ceil(v);
  const p = 10 ** Math.floor(Math.log10(v));
  const f = v / p;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nice * p;
}

/** "21.11" from "2026-11-21". */
const shortDate = (d) => `${d.slice(8, 10)}.${d.slice(5, 7)}`;

let chartSeq = 0;

/**
 * `days`: [{date: 'YYYY-MM-DD', …}]; `value(day)` the bar's height, `barTitle(day)` its tooltip;
 * `line` {value(day), label} an optional stepped line; `title`, `desc`: the chart in words.
 * Returns the <svg>.
 */
export function barChart({ days, value, barTitle, line, title, desc, fill = '#2459d6', lineColor = '#c62828', name }) {
  const id = `chart-${++chartSeq}`;
  const W = 760;
  const H = 240;
  const m = { l: 46, r: 12, t: 12, b: 34 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const n = Math.max(1, days.length);
  const values = days.map(value);
  const lineValues = line ? days.map(line.value) : [];
  const top = niceMax(Math.max(1, ...values, ...lineValues));
  const ticks = top <= 4 ? top : 4;
  const y = (v) => m.t + ph - (v / top) * ph;
  const band = pw / n;
  const barW = Math.max(1, band * 0.72);

  const svg = s(
    'svg',
    { viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'aria-labelledby': `${id}-title ${id}-desc`, class: 'usage-chart', 'data-chart': name, preserveAspectRatio: 'xMidYMid meet' },
    s('title', { id: `${id}-title` }, title),
    s('desc', { id: `${id}-desc` }, desc),
  );
  // Grid and y labels.
  for (let i = 0; i <= ticks; i++) {
    const v = (top / ticks) * i;
    const yy = y(v);
    svg.append(
      s('line', { x1: m.l, x2: W - m.r, y1: yy, y2: yy, stroke: i === 0 ? '#5b6470' : '#e3e7ee', 'stroke-width': 1 }),
      s('text', { x: m.l - 6, y: yy + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6470' }, Number.isInteger(v) ? v : v.toFixed(1)),
    );
  }
  // Bars.
  const bars = s('g', { class: 'bars' });
  days.forEach((d, i) => {
    const v = values[i];
    const x = m.l + i * band + (band - barW) / 2;
    bars.append(
      s('rect', { x: x.toFixed(2), y: y(v).toFixed(2), width: barW.toFixed(2), height: (m.t + ph - y(v)).toFixed(2), fill, class: 'bar', 'data-date': d.date, 'data-value': v }, s('title', null, barTitle(d))),
    );
  });
  svg.append(bars);
  // The stepped line.
  if (line) {
    let dPath = '';
    days.forEach((d, i) => {
      const x0 = m.l + i * band;
      const yy = y(lineValues[i]).toFixed(2);
      dPath += `${i === 0 ? 'M' : 'L'}${x0.toFixed(2)},${yy} L${(x0 + band).toFixed(2)},${yy} `;
    });
    svg.append(s('path', { d: dPath.trim(), fill: 'none', stroke: lineColor, 'stroke-width': 2, 'stroke-dasharray': '6 3', class: 'line' }, s('title', null, line.label)));
  }
  // X labels: about eight across, the last day always.
  const every = Math.max(1, Math.ceil(n / 8));
  days.forEach((d, i) => {
    if (i % every !== 0 && i !== n - 1) return;
    if (i !== n - 1 && n - 1 - i < every / 2) return;
    svg.append(s('text', { x: (m.l + i * band + band / 2).toFixed(2), y: H - m.b + 16, 'text-anchor': 'middle', 'font-size': 11, fill: '#5b6470' }, shortDate(d.date)));
  });
  return svg;
}

/** A legend swatch (a tiny SVG square or dash) for the HTML legend under a chart. */
export function swatch(color, dashed = false) {
  return s(
    'svg',
    { width: 18, height: 10, viewBox: '0 0 18 10', 'aria-hidden': 'true', focusable: 'false' },
    dashed ? s('line', { x1: 0, x2: 18, y1: 5, y2: 5, stroke: color, 'stroke-width': 2, 'stroke-dasharray': '6 3' }) : s('rect', { x: 0, y: 0, width: 18, height: 10, fill: color }),
  );
}
