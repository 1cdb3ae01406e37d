import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Metrics } from '../../lib/metrics';

const FILE = path.resolve(__dirname, '../../../contrib/grafana-dashboard.json');

interface Panel {
  title: string;
  targets?: Array<{ expr: string }>;
}

/** Metric names in a PromQL expression: identifiers followed by a selector, range or bracket, less histogram suffixes. */
function metricNames(expr: string): string[] {
  const ids = expr.match(/\b(?:calico|process|nodejs)_[a-z0-9_]+\b/g) ?? [];
  return ids.map((n) => n.replace(/_(bucket|sum|count)$/, ''));
}

test('every metric the Grafana dashboard queries is one calico node registers', async () => {
  const dash = JSON.parse(fs.readFileSync(FILE, 'utf8')) as { panels: Panel[]; templating: { list: Array<{ query?: string }> } };
  const registered = new Set((await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name));
  const exprs = [
    ...dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: p.title, expr: t.expr }))),
    ...dash.templating.list.filter((v) => v.query?.includes('label_values')).map((v) => ({ where: 'variable', expr: v.query! })),
  ];
  assert.ok(exprs.length >= 10, 'the dashboard has its queries');
  const unknown = exprs.flatMap(({ where, expr }) =>
    metricNames(expr)
      .filter((n) => !registered.has(n))
      .map((n) => `${where}: ${n}`),
  );
  assert.deepEqual(unknown, []);
});

test('the dashboard shows every calico metric the node registers', async () => {
  const text = fs.readFileSync(FILE, 'utf8');
  const ours = (await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => n.startsWith('calico_'));
  assert.deepEqual(
    ours.filter((n) => !text.includes(n)),
    [],
  );
});
