import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { decodeImageBytes, imageGridPng, loadEmbeddedDigits } from '@diffmem/core';
import { escapeHtml, renderReport, type ReportDocument } from '../report/html.js';

const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find((c) => spawnSync('which', [c]).status === 0) ?? null;
const CHROME_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--hide-scrollbars'];

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function sampleReport(): ReportDocument {
  const ds = loadEmbeddedDigits({ perClass: 2, size: 28 });
  const grid = imageGridPng(ds.images, 10);
  const one = imageGridPng(tf.slice(ds.images, [0, 0, 0, 0], [1, -1, -1, -1]) as never, 1, 0);
  ds.images.dispose();
  return {
    title: 'report <test>',
    subtitle: 'rendering check',
    generatedAt: '2026-01-01T00:00:00Z',
    sections: [
      { id: 'grid', title: 'Samples', blocks: [{ kind: 'image', png: grid, caption: 'digits', width: 600 }, { kind: 'facts', facts: [['n', 20]] }] },
      {
        id: 'table',
        title: 'AMG table',
        blocks: [
          { kind: 'table', columns: ['method', '%<1.4', 'Top1'], rows: [['plain', 40, 0.31], ['amg', 0, 1.52], ['inf', Infinity, null]], highlight: [1] },
          { kind: 'pairs', pairs: [{ left: one, right: one, label: 'nL2 0.00', flagged: true }], leftTitle: 'generated', rightTitle: 'nearest' },
          { kind: 'histogram', series: [{ name: 'gen', values: [0.3, 0.5, 1.2, 1.5, 2.0] }, { name: 'held', values: [1.8, 2.1, 2.5] }], thresholds: [{ value: 1.4, label: '1.4' }], xLabel: 'nL2' },
          { kind: 'line', x: [999, 500, 0], series: [{ name: 'σ', y: [-3, -2, null] }], xLabel: 't', yLabel: 'σ', reverseX: true },
        ],
      },
    ],
  };
}

test('renders one self-contained HTML file with escaped text, tables, images and charts', () => {
  const html = renderReport(sampleReport());
  expect(html.startsWith('<!doctype html>')).toBe(true);
  expect(html).toContain('report &lt;test&gt;');
  expect(html).not.toMatch(/src="(https?:|\/\/)/); // no external assets
  expect((html.match(/<img /g) ?? []).length).toBe(3);
  expect((html.match(/<table>/g) ?? []).length).toBe(1);
  expect((html.match(/<svg /g) ?? []).length).toBe(2);
  expect(html).toContain('<td>∞</td>');
  expect(escapeHtml(`a<b>&"'`)).toBe('a&lt;b&gt;&amp;&quot;&#39;');
});

(chromium ? test : test.skip)(
  `headless Chromium shows the pictures and tables (screenshot is not blank)${chromium ? '' : ' — skipped: no chromium on PATH (apt-get install chromium)'}`,
  () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-report-'));
    const file = path.join(dir, 'report.html');
    fs.writeFileSync(file, renderReport(sampleReport()));
    const profile = path.join(dir, 'profile');
    const dom = execFileSync(chromium as string, [...CHROME_FLAGS, `--user-data-dir=${profile}`, '--dump-dom', `file://${file}`], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] });
    expect((dom.match(/<img /g) ?? []).length).toBe(3);
    expect(dom).toContain('<table>');
    const shot = path.join(dir, 'shot.png');
    execFileSync(chromium as string, [...CHROME_FLAGS, `--user-data-dir=${profile}`, `--screenshot=${shot}`, '--window-size=1000,1400', `file://${file}`], { timeout: 60_000, stdio: 'ignore' });
    const px = decodeImageBytes(fs.readFileSync(shot), 3, shot);
    expect(px.width).toBe(1000);
    // Not blank: many distinct grey levels and a real spread (header bar, digits, table lines).
    const levels = new Set<number>();
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < px.data.length; i += 3) {
      const v = px.data[i] as number;
      levels.add(v);
      sum += v;
      sq += v * v;
    }
    const n = px.data.length / 3;
    const std = Math.sqrt(sq / n - (sum / n) ** 2);
    expect(levels.size).toBeGreaterThan(30);
    expect(std).toBeGreaterThan(20);
    fs.rmSync(dir, { recursive: true, force: true });
  },
);
