// The whole sign-in flow at a fixed rate: GET /auth/login, the provider's
// redirects to its login form, the form posted (fields id, username,
// password of the dev stack's provider), the redirects back to the gateway's
// /auth/callback, which sets the session cookie; then one request to
// CHECK_PATH with that cookie, and (LOGOUT=1, the default) POST /auth/logout.
//
//   k6 run -e BASE_URL=http://localhost:8080 bench/k6/login.js
//
// Environment (defaults): BASE_URL (http://localhost:8080), RATE (15 sign-ins
// per minute, at most 6000), DURATION (1m, at most 1h), CHECK_PATH
// (/api/k6-login; empty: none), LOGOUT (1), LOGIN_USER
// ("test-user@" + the provider's host name: the dev stack's user),
// LOGIN_PASSWORD (the dev stack's), P95_MS (300) and P99_MS (1000) for each
// request, FLOW_P95_MS (1500) and FLOW_P99_MS (3000) for a whole sign-in,
// COOKIE_NAME (sid).
//
// The gateway limits /auth/* per client IP (AUTH_RATE_LIMIT, 60/m by
// default), and each iteration makes 3 such requests (login, callback,
// logout): the default rate stays under it. Above 20 sign-ins per minute
// from one machine set AUTH_RATE_LIMIT on the gateway (0 turns it off) or
// expect 429s. See bench/README.md.
import http from 'k6/http';
import { check } from 'k6';
import { Rate, Trend } from 'k6/metrics';
import { BASE_URL, envDuration, envInt, latencyThresholds, sessionCookies, signIn } from './lib.js';

const CHECK_PATH = __ENV.CHECK_PATH === undefined ? '/api/k6-login' : __ENV.CHECK_PATH;
const LOGOUT = (__ENV.LOGOUT || '1') === '1';
const RATE = envInt('RATE', 15, 1, 6000);

const flowDuration = new Trend('login_flow_duration', true);
const loginOK = new Rate('login_ok');

export const options = {
  scenarios: {
    login: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1m',
      duration: envDuration('DURATION', '1m', 3600),
      preAllocatedVUs: Math.min(50, Math.max(2, Math.ceil(RATE / 60) * 2)),
      maxVUs: Math.min(200, Math.max(10, Math.ceil(RATE / 60) * 10)),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: latencyThresholds(300, 1000),
    login_flow_duration: [
      `p(95)<${envInt('FLOW_P95_MS', 1500, 1, 600000)}`,
      `p(99)<${envInt('FLOW_P99_MS', 3000, 1, 600000)}`,
    ],
    login_ok: ['rate>0.99'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max'],
};

export default function () {
  const start = Date.now();
  const sid = signIn(CHECK_PATH || '/');
  loginOK.add(sid !== '');
  if (!sid) {
    return;
  }
  flowDuration.add(Date.now() - start);
  const cookies = sessionCookies(sid);
  if (CHECK_PATH) {
    const res = http.get(BASE_URL + CHECK_PATH, { cookies: cookies, tags: { name: 'GET ' + CHECK_PATH, kind: 'check' } });
    check(res, { 'the new session is accepted: 200': (r) => r.status === 200 });
  }
  if (LOGOUT) {
    const res = http.post(`${BASE_URL}/auth/logout`, null, { cookies: cookies, redirects: 0, tags: { name: 'POST /auth/logout', kind: 'logout' } });
    check(res, { 'logout: 2xx or 3xx': (r) => r.status >= 200 && r.status < 400 });
  }
}
