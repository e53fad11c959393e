import { describe, expect, it } from 'vitest';
import { Table, TableFullError, ValidationError, parsePlayerId, type TableSettlement } from '../../src/index.js';

/** Records what a table submits; stands in for SettlementClient (seating touches neither Redis nor Postgres). */
function recorder(): { submitted: TableSettlement[]; submitSettlement(input: TableSettlement): Promise<{ accepted: true }> } {
  const submitted: TableSettlement[] = [];
  return {
    submitted,
    async submitSettlement(input) {
      submitted.push(input);
      return { accepted: true };
    },
  };
}

describe('table seats', () => {
  it('seats three by default and refuses a fourth with TableFullError naming the table, unchanged', () => {
    const table = new Table({ tableId: 'hall-1/t9', gameId: 'doudizhu', settlement: recorder() });
    expect(table.seats).toBe(3);
    for (const id of ['11', '12', '13']) table.sit(id);
    const err = (() => {
      try {
        table.sit('14');
        return null;
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(TableFullError);
    expect(err).toMatchObject({ code: 'TABLE_FULL', tableId: 'hall-1/t9', seats: 3 });
    expect((err as Error).message).toBe('table "hall-1/t9" is full (3 seats)');
    expect(table.players.map(String)).toEqual(['11', '12', '13']);
  });

  it('lets a seated player sit again at a full table (a no-op), and a freed seat be taken', () => {
    const table = new Table({ tableId: 't', gameId: 'g', settlement: recorder(), seats: 2 });
    table.sit('21');
    table.sit(parsePlayerId('22'));
    table.sit('22');
    expect(table.players).toHaveLength(2);
    expect(() => table.sit('23')).toThrow(TableFullError);
    table.stand('21');
    table.sit('23');
    expect(table.players.map(String)).toEqual(['22', '23']);
  });

  it('takes its number of seats, and ends a game of that many', async () => {
    const settlement = recorder();
    const table = new Table({ tableId: 'mahjong-1', gameId: 'mahjong', settlement, seats: 4 });
    const ids = ['31', '32', '33', '34'];
    for (const id of ids) table.sit(id);
    expect(() => table.sit('35')).toThrow(/table "mahjong-1" is full \(4 seats\)/);
    await table.end({
      matchId: 'mj-1',
      results: ids.map((playerId, i) => ({ playerId, scoreDelta: i === 0 ? 3 : -1, outcome: i === 0 ? ('win' as const) : ('loss' as const) })),
    });
    expect(settlement.submitted[0]?.results).toHaveLength(4);
  });

  it.each([0, -1, 2.5, 1001, Number.NaN, '3'])('refuses seats %j with ValidationError naming the field', (seats) => {
    expect(() => new Table({ tableId: 't', gameId: 'g', settlement: recorder(), seats: seats as number })).toThrow(ValidationError);
    expect(() => new Table({ tableId: 't', gameId: 'g', settlement: recorder(), seats: seats as number })).toThrow(/^seats: /);
  });
});
