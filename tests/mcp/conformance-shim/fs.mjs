// Node's fs, plus globSync where Node lacks it (< 22).
import fs from 'node:fs';

export * from 'node:fs';
export default fs;
export const globSync =
  fs.globSync ??
  function globSync() {
    throw new Error('fs.globSync needs Node >= 22; this shim only lets the conformance tool load on Node 20');
  };
