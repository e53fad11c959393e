import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ValidationError } from '../../errors/index.js';
import type { SettlementInput, SettlementStatus } from '../../settlement/index.js';
import { nonNegativeInt } from '../context.js';
import { addQueueOptions, printJson, withClient, type QueueFlags } from './settlements.js';

async function readMatch(file: string): Promise<SettlementInput> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ValidationError('--file', `cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as SettlementInput; // shape checked by submitSettlement
  } catch (err) {
    throw new ValidationError('--file', `${file} is not valid JSON: ${(err as Error).message}`);
  }
}

export function registerSettle(program: Command): void {
  addQueueOptions(
    program
      .command('settle')
      .description('submit a finished match for settlement and print its status (JSON)')
      .requiredOption('--file <file>', 'match JSON: { matchId, gameId, endedAt, results: [{ playerId, scoreDelta, outcome }] }'),
  )
    .option('--wait <ms>', 'then wait up to ms for every shard to apply (or fail) it', nonNegativeInt('--wait'))
    .action(async (flags: QueueFlags & { file: string; wait?: number }) => {
      const input = await readMatch(flags.file);
      const status = await withClient(flags, async (client) => {
        let s: SettlementStatus | null = await client.submitSettlement(input);
        const deadline = Date.now() + (flags.wait ?? 0);
        while (s && (s.state === 'pending' || s.state === 'unknown') && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          s = { ...((await client.settlementStatus(input.matchId)) ?? s), duplicate: s.duplicate ?? false };
        }
        return s;
      });
      printJson(status);
      if (status.state === 'failed' || (flags.wait !== undefined && status.state !== 'applied')) process.exitCode = 1;
    });
}
