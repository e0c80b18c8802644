// Module resolution hook (see register.mjs): `fs` imported from the conformance tool's files
// resolves to ./fs.mjs; everything else resolves as usual.
const shim = new URL('./fs.mjs', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (
    (specifier === 'fs' || specifier === 'node:fs') &&
    context.parentURL?.includes('/node_modules/@modelcontextprotocol/conformance/')
  ) {
    return { url: shim, shortCircuit: true };
  }
  return next(specifier, context);
}
