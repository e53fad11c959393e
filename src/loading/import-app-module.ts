import { pathToFileURL } from 'node:url';

/**
 * Imports one of the app's own modules (a migration, an effects module) by its file path. Node
 * alone cannot load TypeScript, and a published shardline runs as compiled JS: a .ts or .mts file
 * it refuses is loaded through tsx's `tsImport` when the app has tsx installed. Not through
 * `tsx.register()` and a second `import()` of the same URL: Node caches a failed load per URL, so
 * that second import fails the same way.
 */
export async function importAppModule(file: string, withoutTsx: () => Error): Promise<unknown> {
  const url = pathToFileURL(file).href;
  try {
    return await import(url);
  } catch (err) {
    if (!/\.(ts|mts)$/.test(file) || (err as { code?: string }).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
  }
  let tsImport: (specifier: string, parentURL: string) => Promise<unknown>;
  try {
    ({ tsImport } = await import('tsx/esm/api'));
  } catch {
    throw withoutTsx();
  }
  return tsImport(url, import.meta.url);
}
