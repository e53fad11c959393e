// `node --import ./record-loads.mjs`: appends every module URL the program resolves to the file
// named by $SHARDLINE_LOAD_LOG, so a test can see which packages a given import pulls in.
import { register } from 'node:module';

register('./record-loads-hooks.mjs', import.meta.url);
