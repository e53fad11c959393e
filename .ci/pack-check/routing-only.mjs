// Run with --import <record-loads.mjs>: routes with shardline/routing alone, so the log shows what that loads.
import { Router } from 'shardline/routing';
import { loadShardMap } from 'shardline/shardmap';

const router = new Router(await loadShardMap(process.argv[2], process.env));
console.log(router.shardFor(BigInt(process.argv[3])).id);
