// What the example app tells shardline about its game and its tables, shared by the submitting
// script and the worker's effects. In your app, import from 'shardline' instead of '../../src/index.js'.
import type { ColumnType } from 'kysely';
import { z } from 'zod';
import type { PlayerId } from '../../src/index.js';

/** What a dou dizhu result carries besides the score: checked at submit, handed to the effect. */
export const resultData = z.strictObject({
  coins: z.number().int().min(0).max(1_000_000),
  xp: z.number().int().min(0).max(1_000_000),
  drops: z.array(z.string().min(1).max(64)).max(16).default([]),
});

/** The client's `games` option: which games take data, and its schema. */
export const games = { doudizhu: { data: resultData } };

export interface WalletTable {
  player_id: ColumnType<PlayerId, PlayerId, never>;
  coins: ColumnType<bigint, bigint | number, bigint | number>;
  xp: ColumnType<bigint, bigint | number, bigint | number>;
  updated_at: ColumnType<Date, never, Date | string>;
}

export interface InventoryTable {
  player_id: ColumnType<PlayerId, PlayerId, never>;
  item: ColumnType<string, string, never>;
  quantity: number;
}

/** The app's tables (migrations/), for `ShardSet<AppDb>` and the effects' transactions. */
export interface AppDb {
  wallet: WalletTable;
  inventory: InventoryTable;
}
