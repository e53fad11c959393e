import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { SettlementTimeoutError, ValidationError } from '../../errors/index.js';
import type { SettlementInput } from '../../settlement/index.js';
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
        const submitted = await client.submitSettlement(input);
        if (flags.wait === undefined) return submitted;
        const duplicate = submitted.duplicate ?? false;
        try {
          return { ...(await client.waitFor(input.matchId, { timeoutMs: flags.wait })), duplicate };
        } catch (err) {
          // Still open after --wait: print the last status like any other, and exit 1 below.
          if (err instanceof SettlementTimeoutError) return { ...(err.lastStatus ?? submitted), duplicate };
          throw err;
        }
      });
      printJson(status);
      if (status.state === 'failed' || (flags.wait !== undefined && status.state !== 'applied')) process.exitCode = 1;
    });
}
