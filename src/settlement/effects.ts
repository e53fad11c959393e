import { existsSync } from 'node:fs';
import path from 'node:path';
import { importAppModule } from '../loading/import-app-module.js';
import type { Transaction } from 'kysely';
import type { JsonObject, Outcome, ShardDatabase } from '../db/schema.js';
import { isTransientDbError } from '../db/pg-errors.js';
import { EffectsModuleError, SettlementEffectError, ValidationError } from '../errors/index.js';
import type { PlayerId } from '../routing/index.js';
import type { DataOf } from './types.js';

/** A ledger row the apply transaction actually inserted, as a game's effect receives it. */
export interface AppliedResult<Data = JsonObject> {
  matchId: string;
  gameId: string;
  playerId: PlayerId;
  outcome: Outcome;
  scoreDelta: number;
  endedAt: Date;
  /** The result's data as the game's schema returned it at submit; null when it carried none. */
  data: Data | null;
}

/**
 * What a game's results do to the app's own tables (wallets, inventories...), run inside the
 * worker's apply transaction: it commits with the ledger rows and stats, or not at all. `applied`
 * holds only the rows inserted in this transaction (never those of a part applied before), of one
 * or several matches of the game; it is never empty. Write only through `trx`: anything outside the
 * database (HTTP calls, Redis) is not undone when the transaction rolls back, and may run again.
 */
export type SettlementEffect<Data = JsonObject, DB = ShardDatabase> = (trx: Transaction<DB>, applied: readonly AppliedResult<Data>[]) => Promise<void> | void;

/** Effects by game id. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each game's data has its own type
export type SettlementEffects<DB = ShardDatabase> = Readonly<Record<string, SettlementEffect<any, DB> | undefined>>;

/** Effects typed from the client's `games` table: `applied[i].data` has the type each schema yields. */
export type EffectsFor<Games, DB = ShardDatabase> = { readonly [G in keyof Games]?: SettlementEffect<DataOf<Games[G]>, DB> };

/** Refuses anything but an object of functions, naming the entry (`field` is its option name). */
export function checkEffects(effects: unknown, field = 'effects'): SettlementEffects<unknown> {
  if (typeof effects !== 'object' || effects === null || Array.isArray(effects)) throw new ValidationError(field, 'must be an object of functions by game id');
  for (const [gameId, fn] of Object.entries(effects)) {
    if (fn !== undefined && typeof fn !== 'function')
      throw new ValidationError(`${field}.${gameId}`, `must be a function (trx, applied) => Promise<void>, got ${typeof fn}`);
  }
  return Object.freeze({ ...(effects as SettlementEffects<unknown>) });
}

/**
 * Runs each game's effect over its rows, in game order, inside the apply transaction. A transient
 * database error passes as it is (the jobs are retried); anything else becomes a
 * SettlementEffectError, which fails the parts given to the effect and, for a part alone, its
 * dead letter's reason.
 */
export async function runEffects(
  trx: Transaction<ShardDatabase>,
  effects: SettlementEffects<unknown>,
  byGame: ReadonlyMap<string, AppliedResult[]>,
): Promise<void> {
  for (const gameId of [...byGame.keys()].sort()) {
    const fx = Object.hasOwn(effects, gameId) ? effects[gameId] : undefined;
    const rows = byGame.get(gameId);
    if (!fx || !rows || rows.length === 0) continue;
    try {
      await fx(trx as unknown as Transaction<unknown>, rows);
    } catch (err) {
      if (isTransientDbError(err)) throw err;
      throw new SettlementEffectError(gameId, [...new Set(rows.map((r) => r.matchId))], err);
    }
  }
}

/**
 * Imports `specifier` (a path, resolved from `cwd`) and returns its `effects` export, checked. A
 * TypeScript module is loaded through tsx when Node cannot load it alone and the app has tsx.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a module's tables are not known to the type system
export async function loadEffectsModule(specifier: string, cwd: string): Promise<SettlementEffects<any>> {
  const file = path.resolve(cwd, specifier);
  if (!existsSync(file)) throw new EffectsModuleError(specifier, `no such file (resolved to ${file})`);
  let mod: unknown;
  try {
    mod = await importAppModule(
      file,
      () =>
        new EffectsModuleError(
          specifier,
          'is TypeScript, which this Node cannot load alone: install tsx in the app (npm install -D tsx), or compile it to .js',
        ),
    );
  } catch (err) {
    if (err instanceof EffectsModuleError) throw err;
    throw new EffectsModuleError(specifier, `could not be loaded: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const effects = (mod as { effects?: unknown } | null)?.effects;
  if (effects === undefined)
    throw new EffectsModuleError(specifier, 'exports no `effects` (export const effects = { <gameId>: async (trx, applied) => { ... } })');
  try {
    return checkEffects(effects, 'effects');
  } catch (err) {
    throw new EffectsModuleError(specifier, err instanceof Error ? err.message : String(err), { cause: err });
  }
}
