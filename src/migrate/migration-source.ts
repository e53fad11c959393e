import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Knex } from 'knex';

/** migrations/ at the package root; in a build, the compiled copy beside dist/src. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

const isMigrationFile = (f: string) => /\.(ts|js|mjs)$/.test(f) && !f.endsWith('.d.ts');

/** Migration names in order, without extension: the schema versions this code knows. */
export function migrationNames(dir: string = MIGRATIONS_DIR): string[] {
  return readdirSync(dir)
    .filter(isMigrationFile)
    .map((f) => f.replace(/\.(ts|js|mjs)$/, ''))
    .sort();
}

/** The newest schema version this code expects every shard to be at. */
export function expectedVersion(dir: string = MIGRATIONS_DIR): string | null {
  return migrationNames(dir).at(-1) ?? null;
}

/**
 * knex's default source requires files through CommonJS; ours imports ES modules, so the same
 * TypeScript migrations run under tsx in a clone and as compiled JS from a build.
 */
export class EsmMigrationSource implements Knex.MigrationSource<string> {
  constructor(private readonly dir: string = MIGRATIONS_DIR) {}

  async getMigrations(): Promise<string[]> {
    return readdirSync(this.dir).filter(isMigrationFile).sort();
  }

  getMigrationName(file: string): string {
    return file.replace(/\.(ts|js|mjs)$/, '');
  }

  async getMigration(file: string): Promise<Knex.Migration> {
    return (await import(pathToFileURL(path.join(this.dir, file)).href)) as Knex.Migration;
  }
}
