// Admin reload under load: a proxy scenario (as proxy.js) runs while an
// admin posts /admin/config/reload every RELOAD_EVERY seconds with a bearer
// token; a reload must neither fail a proxied request nor slow it past the
// thresholds, and each reload must answer 200 {"ok":true,...}.
//
//   k6 run -e BASE_URL=http://localhost:8080 -e SID=<cookie value> -e ADMIN_TOKEN=<token> bench/k6/admin-reload.js
//
// ADMIN_TOKEN is the token part of one of the gateway's ADMIN_TOKENS
// (name=token); the dev stack prints one. The reload re-reads the gateway's
// own config.yml, so the routing stays the same.
//
// Environment (defaults): BASE_URL (http://localhost:8080), SID or LOGIN=1,
// ADMIN_TOKEN (required), API_PATH (/api/bench), VUS (32, at most 1000),
// DURATION (30s, at most 1h), RELOAD_EVERY (2 seconds, 1 to 3600), P95_MS
// (100) and P99_MS (250) for proxied requests, RELOAD_P99_MS (1000),
// COOKIE_NAME (sid).
import http from 'k6/http';
import { check, fail } from 'k6';
import { BASE_URL, envDuration, envInt, latencyThresholds, sessionCookies, sessionFromEnv } from './lib.js';

const API_PATH = __ENV.API_PATH || '/api/bench';
const DURATION = envDuration('DURATION', '30s', 3600);
const RELOAD_EVERY = envInt('RELOAD_EVERY', 2, 1, 3600);

export const options = {
  scenarios: {
    proxy: {
      executor: 'constant-vus',
      exec: 'proxy',
      vus: envInt('VUS', 32, 1, 1000),
      duration: DURATION,
    },
    reload: {
      executor: 'constant-arrival-rate',
      exec: 'reload',
      rate: 1,
      timeUnit: `${RELOAD_EVERY}s`,
      duration: DURATION,
      preAllocatedVUs: 1,
      maxVUs: 4,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    'http_req_failed{kind:reload}': ['rate==0'],
    'http_req_duration{kind:proxy}': latencyThresholds(100, 250),
    'http_req_duration{kind:reload}': [`p(99)<${envInt('RELOAD_P99_MS', 1000, 1, 600000)}`],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  if (!__ENV.ADMIN_TOKEN) {
    fail('set ADMIN_TOKEN to the token part of one of the gateway\'s ADMIN_TOKENS (name=token)');
  }
  return { sid: sessionFromEnv() };
}

export function proxy(data) {
  const res = http.get(BASE_URL + API_PATH, {
    cookies: sessionCookies(data.sid),
    tags: { name: 'GET ' + API_PATH, kind: 'proxy' },
  });
  check(res, { 'proxied: 200': (r) => r.status === 200 });
}

export function reload() {
  const res = http.post(`${BASE_URL}/admin/config/reload`, null, {
    headers: { Authorization: `Bearer ${__ENV.ADMIN_TOKEN}` },
    tags: { name: 'POST /admin/config/reload', kind: 'reload' },
  });
  check(res, {
    'reload: 200 {"ok":true}': (r) => {
      if (r.status !== 200) {
        return false;
      }
      try {
        return r.json('ok') === true;
      } catch (e) {
        return false;
      }
    },
  });
}
