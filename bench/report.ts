import type { BenchResult } from './types.js';

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(n >= 10 ? 1 : 3);
}

/** Did the ratio meet its target? Targets are written like ">= 0.5". */
export function meetsTarget(r: BenchResult): boolean | undefined {
  if (r.met !== undefined) return r.met;
  const m = /^>=\s*([\d.]+)/.exec(r.target ?? '');
  return m ? r.ratio >= Number(m[1]) : undefined;
}

export function printResults(results: readonly BenchResult[]): void {
  const rows = results.map((r) => {
    const ok = meetsTarget(r);
    return [
      r.name,
      `${fmt(r.value)} ${r.unit}`,
      `${fmt(r.baseline)} (${r.baselineName})`,
      r.ratio.toFixed(2),
      r.target ? (ok === undefined ? r.target : `${r.target} ${ok ? 'met' : 'MISSED'}`) : '',
      r.extra
        ? Object.entries(r.extra)
            .map(([k, v]) => `${k}=${typeof v === 'number' ? fmt(v) : v}`)
            .join(' ')
        : '',
    ];
  });
  const header = ['benchmark', 'shardline', 'baseline (same run)', 'ratio', 'target', 'extra'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(r));
}
