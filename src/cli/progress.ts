/**
 * Live per-shard progress for a terminal: one line per shard, redrawn in place, so shards working
 * in parallel each keep their own line instead of overwriting one shared line.
 */

export type ShardProgress =
  { kind: 'waiting' } | { kind: 'running' } | { kind: 'step'; step: number; of: number; migration: string } | { kind: 'done' } | { kind: 'failed' };

function stateText(p: ShardProgress): string {
  switch (p.kind) {
    case 'waiting':
      return 'waiting';
    case 'running':
      return 'running';
    case 'step':
      return `${p.step}/${p.of} ${p.migration}`;
    case 'done':
      return 'done';
    case 'failed':
      return 'FAILED';
  }
}

/** One line per shard, in the map's order, ids padded so the states line up in a column. */
export function renderProgress(shards: ReadonlyMap<string, ShardProgress>): string[] {
  const width = Math.max(0, ...[...shards.keys()].map((id) => id.length));
  return [...shards].map(([id, p]) => `${id.padEnd(width)}  ${stateText(p)}`);
}

const CLEAR_LINE = '\r\x1b[2K';
const up = (n: number): string => (n > 0 ? `\x1b[${n}A` : '');

export interface LineSink {
  write(text: string): unknown;
  columns?: number;
}

/**
 * Keeps the shards' states and redraws the whole block on every change. The cursor rests just
 * below the block, so whatever is printed after the run lands beneath the final lines.
 */
export class LiveProgress {
  private readonly shards: Map<string, ShardProgress>;
  private drawn = 0;

  constructor(
    ids: readonly string[],
    private readonly out: LineSink,
  ) {
    this.shards = new Map(ids.map((id) => [id, { kind: 'waiting' }]));
    this.redraw();
  }

  set(id: string, progress: ShardProgress): void {
    this.shards.set(id, progress);
    this.redraw();
  }

  private redraw(): void {
    // A line wider than the terminal wraps onto two rows, and "up N" would then land inside the block.
    const cols = this.out.columns;
    const fit = (line: string) => (cols && line.length >= cols ? line.slice(0, cols - 1) : line);
    const lines = renderProgress(this.shards);
    this.out.write(up(this.drawn) + lines.map((l) => `${CLEAR_LINE}${fit(l)}\n`).join(''));
    this.drawn = lines.length;
  }
}
