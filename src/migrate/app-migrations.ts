import path from 'node:path';
import type { Knex } from 'knex';
import { SelfClosureError } from '../errors/index.js';
import { importAppModule } from '../loading/import-app-module.js';
import { EsmMigrationSource } from './migration-source.js';
import type pg from 'pg';
import { selfClosureFaults } from './self-closure.js';

/**
 * The app's migrations as knex runs them: each `up` followed, inside the same transaction, by the
 * self-closure check over every app table, so a migration that breaks a rule throws and is rolled
 * back with its row in the migrations table. A migration that opts out of its transaction
 * (`config.transaction = false`) is refused: the check could not undo it.
 */
export class AppMigrationSource extends EsmMigrationSource {
  constructor(
    private readonly appDir: string,
    private readonly shardId: string,
  ) {
    super(appDir);
  }

  override async getMigration(file: string): Promise<Knex.Migration> {
    // knex reads `config.transaction` off a migration module, though its type does not declare it.
    const m: Knex.Migration & { config?: { transaction?: boolean } } = (await importAppModule(
      path.join(this.appDir, file),
      () =>
        new Error(`${file} is TypeScript, which this Node cannot load alone: install tsx in the app (npm install -D tsx), or compile the migrations to .js`),
    )) as Knex.Migration;
    const name = this.getMigrationName(file);
    if (typeof m.up !== 'function') throw new Error(`app migration ${name} exports no up() function`);
    if (m.config?.transaction === false) {
      throw new Error(
        `app migration ${name} sets config.transaction = false: app migrations run in a transaction each, so the self-closure check can roll them back`,
      );
    }
    const up = m.up.bind(m);
    return {
      ...m,
      up: async (trx: Knex) => {
        await up(trx);
        // The transaction's own connection (knex hands it out as is inside a transaction), so the
        // check sees what the migration did, uncommitted.
        const client = trx.client as { acquireConnection(): Promise<pg.ClientBase> };
        const conn = await client.acquireConnection();
        const faults = await selfClosureFaults(conn);
        if (faults.length > 0) throw new SelfClosureError(this.shardId, name, faults);
        // The new player tables get the bucket fence (migration 0009) in the same transaction.
        const fence = await conn.query<{ fenced: boolean }>(`SELECT to_regprocedure('shardline_apply_fence()') IS NOT NULL AS fenced`);
        if (fence.rows[0]?.fenced) await conn.query('SELECT shardline_apply_fence()');
      },
    };
  }
}
