/**
 * The autoEnter storm of the zone-feed benchmark, in its own process (another game server's
 * entries, not competing with the watchers for this event loop). Not a benchmark file itself.
 *
 *   node --import tsx bench/zone-storm.ts <redisUrl> <prefix> <zone> <firstPlayerId> <count> <perSecond> <concurrency>
 *
 * Waits for a line on stdin, then seats `count` new players at `perSecond` (0: as fast as it can,
 * `concurrency` calls in flight), and prints one JSON line: per entry [roomId, count, sentAt, repliedAt]
 * (epoch ms, sub-millisecond). In an enter-only storm a room's count names one change.
 */
import { Redis } from 'ioredis';
import { RoomService } from '../src/index.js';

const [url, prefix, zone, first, count, perSecond, concurrency] = process.argv.slice(2);
if (!url || !prefix || !zone || !first || !count || perSecond === undefined || !concurrency)
  throw new Error('usage: zone-storm <url> <prefix> <zone> <first> <count> <perSecond> <concurrency>');
const client = new Redis(url);
const service = new RoomService({ connection: client, prefix });
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

process.stdin.once('data', () => {
  void storm();
});
await client.ping();
process.stdout.write('ready\n');

async function storm(): Promise<void> {
  const n = Number(count);
  const rate = Number(perSecond);
  const out = new Array<[string, number, number, number]>(n);
  let next = 0;
  const t0 = now();
  await Promise.all(
    Array.from({ length: Number(concurrency) }, async () => {
      for (let i = next++; i < n; i = next++) {
        if (rate > 0) {
          const due = t0 + (i * 1000) / rate;
          const wait = due - now();
          if (wait > 1) await sleep(wait);
        }
        const sentAt = now();
        const seat = await service.autoEnter(zone!, String(BigInt(first!) + BigInt(i)));
        out[i] = [seat.roomId, seat.count, sentAt, now()];
      }
    }),
  );
  process.stdout.write(JSON.stringify({ entries: out, seconds: (now() - t0) / 1000 }) + '\n');
  await service.close();
  client.disconnect();
  process.stdin.destroy();
}
