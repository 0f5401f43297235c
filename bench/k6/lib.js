// Shared by the k6 scripts of this directory: their environment variables,
// the session cookie, and signing in through the gateway and the provider's
// login form (the dev stack's OpenID provider: bench/devstack, authflow/testidp).
// It is not a test by itself; see bench/README.md.
import http from 'k6/http';
import { check, fail } from 'k6';

// BASE_URL is the gateway, without a trailing slash.
export const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8080').replace(/\/+$/, '');
// COOKIE_NAME is the gateway's SESSION_COOKIE_NAME.
export const COOKIE_NAME = __ENV.COOKIE_NAME || 'sid';

// envInt reads a whole number from the environment, within [min, max].
export function envInt(name, def, min, max) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') {
    return def;
  }
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`${name}=${raw}: must be a whole number from ${min} to ${max}`);
  }
  return n;
}

// envDuration reads a k6 duration ("30s", "2m", "1h") of at most max
// seconds, so that a typo cannot start an endless run.
export function envDuration(name, def, maxSeconds) {
  const raw = __ENV[name] || def;
  const m = /^(\d+)(s|m|h)$/.exec(raw);
  const seconds = m ? Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2]] : NaN;
  if (!(seconds > 0 && seconds <= maxSeconds)) {
    throw new Error(`${name}=${raw}: must be a duration such as 30s, 5m or 1h, above 0 and at most ${maxSeconds}s`);
  }
  return raw;
}

// latencyThresholds is the p95/p99 threshold of a Trend in milliseconds,
// overridable with P95_MS and P99_MS.
export function latencyThresholds(p95, p99) {
  return [
    `p(95)<${envInt('P95_MS', p95, 1, 600000)}`,
    `p(99)<${envInt('P99_MS', p99, 1, 600000)}`,
  ];
}

// cookieHeader is the Cookie header that carries session id sid.
export function cookieHeader(sid) {
  return `${COOKIE_NAME}=${sid}`;
}

// sessionCookies is the cookies parameter of a k6 request that sends
// session id sid, replacing whatever the VU's cookie jar holds of that name.
export function sessionCookies(sid) {
  return { [COOKIE_NAME]: { value: sid, replace: true } };
}

// sessionFromEnv returns the session cookie's value for the scripts that
// need one: SID as given, or (LOGIN=1) a fresh sign-in through the form.
// Call it from setup(): one session shared by every VU.
export function sessionFromEnv() {
  if (__ENV.SID) {
    return __ENV.SID;
  }
  if (__ENV.LOGIN === '1') {
    const sid = signIn();
    if (!sid) {
      fail('LOGIN=1: signing in failed (see the checks above)');
    }
    return sid;
  }
  fail('set SID=<the session cookie value> (see bench/README.md), or LOGIN=1 to sign in through the login form first');
  return '';
}

// resolve returns the absolute URL of loc (a Location header) relative to
// base, as a browser would.
export function resolve(base, loc) {
  if (/^[a-z][a-z0-9+.-]*:/i.test(loc)) {
    return loc;
  }
  const origin = /^([a-z][a-z0-9+.-]*:)\/\/[^/?#]*/i.exec(base);
  if (!origin) {
    throw new Error(`not an absolute URL: ${base}`);
  }
  if (loc.startsWith('//')) {
    return origin[1] + loc;
  }
  if (loc.startsWith('/')) {
    return origin[0] + loc;
  }
  const path = base.split(/[?#]/)[0];
  if (loc.startsWith('?')) {
    return path + loc;
  }
  return path.slice(0, path.lastIndexOf('/') + 1) + loc;
}

// hostname returns the host name of an absolute URL, without the port.
function hostname(url) {
  const m = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)/i.exec(url);
  return m ? m[1] : '';
}

const maxHops = 10;

// signIn runs the whole sign-in as a browser would, each redirect followed
// by hand so that every step is timed under its own name:
//
//  1. GET BASE_URL/auth/login: the gateway answers 302 to the provider's
//     authorization endpoint (PKCE, state and nonce kept server-side);
//  2. the provider redirects to its login form, /login/username?authRequestID=...;
//  3. the form (fields id, username, password: zitadel's example OP) is
//     posted with LOGIN_USER / LOGIN_PASSWORD;
//  4. the provider redirects to its callback and then to the gateway's
//     redirect_uri (APP_BASE_URL + /auth/callback), which exchanges the
//     code and sets the session cookie.
//
// It returns the session cookie's value, or '' when a step failed (each
// step is a check). LOGIN_USER defaults to the dev provider's first user,
// "test-user@" + the provider's host name; LOGIN_PASSWORD to its password.
// next is the local path the gateway sends the browser to afterwards.
export function signIn(next) {
  const params = (name) => ({ redirects: 0, tags: { name: name, kind: 'login' } });
  let res = http.get(`${BASE_URL}/auth/login?next=${encodeURIComponent(next || '/')}`, params('login 1: GET /auth/login'));
  if (!check(res, { 'login 1: /auth/login redirects to the provider': (r) => r.status === 302 && !!r.headers.Location })) {
    return '';
  }
  // To the form: the provider's redirects, until a page with a password field.
  for (let hop = 0; hop < maxHops && res.status >= 300 && res.status < 400; hop++) {
    res = http.get(resolve(res.url, res.headers.Location), params('login 2: provider redirects to its form'));
  }
  if (!check(res, { 'login 2: the provider shows its login form': (r) => r.status === 200 && /name="password"/.test(r.body || '') })) {
    return '';
  }
  const user = __ENV.LOGIN_USER || `test-user@${hostname(res.url)}`;
  const password = __ENV.LOGIN_PASSWORD || 'verysecure';
  // submitForm fills the hidden "id" (the auth request) from the page and
  // posts to the form's action, resolved against the page's URL.
  res = res.submitForm({
    formSelector: 'form',
    fields: { username: user, password: password },
    params: params('login 3: POST the login form'),
  });
  if (!check(res, { 'login 3: the provider accepts the password (redirect)': (r) => r.status >= 300 && r.status < 400 })) {
    return '';
  }
  // Back to the gateway: redirects until one answer sets the session cookie
  // (the gateway's /auth/callback).
  let sid = '';
  for (let hop = 0; hop < maxHops && !sid && res.status >= 300 && res.status < 400; hop++) {
    res = http.get(resolve(res.url, res.headers.Location), params('login 4: redirects to /auth/callback'));
    const set = res.cookies[COOKIE_NAME];
    if (set && set.length > 0 && set[0].value) {
      sid = set[0].value;
    }
  }
  check(res, { 'login 4: /auth/callback sets the session cookie': () => sid !== '' });
  return sid;
}
