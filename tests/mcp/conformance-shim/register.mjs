// Preload (`node --import ./register.mjs ...`) for @modelcontextprotocol/conformance on Node 20.
// The tool's bundle does `import { globSync } from "fs"`, an export Node has only from 22 on, so
// on Node 20 it does not even load. Its `authorization` command never calls globSync: this hook
// hands the tool's bundle (and only it) an `fs` that is Node's own plus a globSync that throws.
// node_modules is not edited. On Node >= 22 the real globSync is passed through.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
