/**
 * A separate OS process that enters players into rooms, for the concurrency test: it stands for
 * another game server racing for the same seats. Not a test file itself.
 *
 *   node --import tsx test/rooms/enter-worker.ts <redisUrl> <prefix> <roomsCsv> <firstPlayerId> <count>
 */
import { Redis } from 'ioredis';
import { RoomFullError, RoomService } from '../../src/index.js';

const [url, prefix, roomsCsv, first, count] = process.argv.slice(2);
if (!url || !prefix || !roomsCsv || !first || !count) throw new Error('usage: enter-worker <url> <prefix> <rooms> <first> <count>');
const rooms = roomsCsv.split(',');
const client = new Redis(url);
const service = new RoomService({ connection: client, prefix });
// Wait for the go signal on stdin so every process starts its storm at the same moment.
process.stdin.once('data', () => {
  void storm();
});
process.stdout.write('ready\n');

async function storm(): Promise<void> {
  let ok = 0;
  let full = 0;
  const seated: string[] = [];
  await Promise.all(
    Array.from({ length: Number(count) }, async (_, i) => {
      const player = String(BigInt(first!) + BigInt(i));
      try {
        const seat = await service.enter(rooms[i % rooms.length]!, player);
        ok += 1;
        seated.push(`${seat.roomId}:${player}`);
      } catch (err) {
        if (!(err instanceof RoomFullError)) throw err;
        full += 1;
      }
    }),
  );
  process.stdout.write(JSON.stringify({ ok, full, seated }) + '\n');
  await service.close();
  client.disconnect();
  process.stdin.destroy();
}
