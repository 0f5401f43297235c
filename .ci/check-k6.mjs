// Loads the k6 scripts of a directory under Node with stand-ins for the k6
// modules (k6 itself is not installed in CI) and checks what k6 would read
// from them before running anything:
//
//   - the script evaluates (its environment parsing, its options);
//   - options.thresholds has http_req_failed and p(95) and p(99) limits;
//   - every scenario has a duration of at most 1h and at most 1000 VUs,
//     and runs a function the script exports;
//   - an out-of-range DURATION or VUS is refused when the script is loaded.
//
// Usage: node .ci/check-k6.mjs DIR   (every DIR/*.js but lib.js, which they import)
// Syntax alone is checked by node --check in .ci/run.
import { register } from 'node:module';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const stubs = {
  k6: `
    export function check(v, sets) { for (const f of Object.values(sets)) f(v); return true; }
    export function fail(msg) { throw new Error(msg); }
    export function group(name, f) { return f(); }
    export function sleep() {}
    export default { check, fail, group, sleep };`,
  'k6/http': `
    const r = () => { throw new Error('k6/http called while loading the script'); };
    export default { get: r, post: r, put: r, del: r, request: r, batch: r, cookieJar: r };`,
  'k6/ws': `
    export function connect() { throw new Error('k6/ws called while loading the script'); }
    export default { connect };`,
  'k6/metrics': `
    class Metric { constructor(name) { this.name = name; } add() {} }
    export class Counter extends Metric {}
    export class Gauge extends Metric {}
    export class Rate extends Metric {}
    export class Trend extends Metric {}
    export default { Counter, Gauge, Rate, Trend };`,
};

register(
  'data:text/javascript,' +
    encodeURIComponent(`
      const stubs = ${JSON.stringify(stubs)};
      export async function resolve(specifier, context, next) {
        if (Object.hasOwn(stubs, specifier)) {
          return { url: 'data:text/javascript,' + encodeURIComponent(stubs[specifier]), shortCircuit: true };
        }
        return next(specifier, context);
      }`),
);

const maxSeconds = 3600;
const maxVUs = 1000;

function seconds(d) {
  const m = /^(\d+)(ms|s|m|h)$/.exec(String(d));
  return m ? Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]] : NaN;
}

// load imports a script afresh with env as __ENV.
let loads = 0;
async function load(file, env) {
  globalThis.__ENV = env;
  globalThis.__VU = 0;
  globalThis.__ITER = 0;
  return import(pathToFileURL(file).href + `?load=${++loads}`);
}

function problems(mod) {
  const out = [];
  const o = mod.options;
  if (!o || typeof o !== 'object') {
    return ['exports no options'];
  }
  const th = o.thresholds || {};
  if (!Object.keys(th).some((k) => k.startsWith('http_req_failed'))) {
    out.push('options.thresholds has no http_req_failed');
  }
  const limits = Object.values(th).flat().map(String);
  for (const p of ['p(95)', 'p(99)']) {
    if (!limits.some((l) => l.startsWith(p))) {
      out.push(`options.thresholds has no ${p} limit`);
    }
  }
  const scenarios = Object.entries(o.scenarios || {});
  if (scenarios.length === 0) {
    out.push('options.scenarios is empty');
  }
  for (const [name, s] of scenarios) {
    const d = seconds(s.duration);
    if (!(d > 0 && d <= maxSeconds)) {
      out.push(`scenario ${name}: duration ${s.duration} is not within 1h`);
    }
    for (const k of ['vus', 'maxVUs', 'preAllocatedVUs']) {
      if (s[k] !== undefined && !(s[k] >= 1 && s[k] <= maxVUs)) {
        out.push(`scenario ${name}: ${k} ${s[k]} is not from 1 to ${maxVUs}`);
      }
    }
    const exec = s.exec || 'default';
    if (typeof mod[exec] !== 'function') {
      out.push(`scenario ${name}: runs ${exec}, which the script does not export as a function`);
    }
  }
  return out;
}

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node .ci/check-k6.mjs DIR');
  process.exit(2);
}
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.js') && f !== 'lib.js')
  .sort()
  .map((f) => resolve(join(dir, f)));
if (files.length === 0) {
  console.error(`check-k6: no k6 script in ${dir}`);
  process.exit(1);
}
let failed = false;
for (const file of files) {
  const found = [];
  try {
    found.push(...problems(await load(file, {})));
  } catch (e) {
    found.push(`does not load with the default environment: ${e.message}`);
  }
  for (const env of [{ DURATION: '2h' }, { DURATION: 'forever' }, { VUS: '100000' }]) {
    try {
      await load(file, env);
      if (env.VUS && !/\bVUS\b/.test(readFileSync(file, 'utf8'))) {
        continue; // a script without VUS (login.js: a rate) ignores it
      }
      found.push(`accepts ${JSON.stringify(env)}`);
    } catch {
      // refused, as it should be
    }
  }
  console.log(`${found.length === 0 ? 'ok  ' : 'FAIL'} ${file}`);
  for (const p of found) {
    console.log(`     ${p}`);
  }
  failed ||= found.length > 0;
}
process.exit(failed ? 1 : 0);
