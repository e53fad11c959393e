import { describe, expect, it } from 'vitest';
import { LiveProgress, renderProgress, type ShardProgress } from '../../src/cli/progress.js';

describe('renderProgress', () => {
  it('gives one line per shard in order, with ids padded into a column', () => {
    const shards = new Map<string, ShardProgress>([
      ['sz-1', { kind: 'step', step: 2, of: 4, migration: '0002_settlement_inbox' }],
      ['north-1', { kind: 'waiting' }],
      ['sc-1', { kind: 'running' }],
      ['na-1', { kind: 'done' }],
      ['eu-1', { kind: 'failed' }],
    ]);
    expect(renderProgress(shards)).toEqual(['sz-1     2/4 0002_settlement_inbox', 'north-1  waiting', 'sc-1     running', 'na-1     done', 'eu-1     FAILED']);
  });

  it('renders no lines for no shards', () => {
    expect(renderProgress(new Map())).toEqual([]);
  });
});

describe('LiveProgress', () => {
  const sink = (columns?: number) => {
    const writes: string[] = [];
    return { writes, out: { write: (t: string) => writes.push(t), ...(columns ? { columns } : {}) } };
  };

  it('draws every shard at once, then moves up over the whole block to redraw it in place', () => {
    const { writes, out } = sink();
    const live = new LiveProgress(['sz-1', 'sc-1'], out);
    live.set('sc-1', { kind: 'step', step: 1, of: 4, migration: '0001_player_record_set' });
    live.set('sz-1', { kind: 'done' });
    expect(writes).toEqual([
      '\r\x1b[2Ksz-1  waiting\n\r\x1b[2Ksc-1  waiting\n',
      '\x1b[2A\r\x1b[2Ksz-1  waiting\n\r\x1b[2Ksc-1  1/4 0001_player_record_set\n',
      '\x1b[2A\r\x1b[2Ksz-1  done\n\r\x1b[2Ksc-1  1/4 0001_player_record_set\n',
    ]);
  });

  it('cuts lines to the terminal width so none wraps and throws off the cursor count', () => {
    const { writes, out } = sink(12);
    new LiveProgress(['sz-1'], out).set('sz-1', { kind: 'step', step: 2, of: 4, migration: '0002_settlement_inbox' });
    expect(writes.at(-1)).toBe('\x1b[1A\r\x1b[2Ksz-1  2/4 0\n');
  });
});
