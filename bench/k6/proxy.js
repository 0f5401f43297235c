// Authenticated proxy load: VUS virtual users send GET BASE_URL + API_PATH
// with one session cookie for DURATION, as fast as the gateway answers.
//
//   k6 run -e BASE_URL=http://localhost:8080 -e SID=<cookie value> bench/k6/proxy.js
//   k6 run -e LOGIN=1 bench/k6/proxy.js        # sign in through the login form first
//
// Environment (defaults): BASE_URL (http://localhost:8080), SID or LOGIN=1,
// API_PATH (/api/bench), VUS (32, at most 1000), DURATION (30s, at most 1h),
// P95_MS (100), P99_MS (250), COOKIE_NAME (sid); with LOGIN=1 also
// LOGIN_USER and LOGIN_PASSWORD (the dev stack's test user by default).
// Fails (thresholds) when more than 1% of requests fail or p95/p99 are above
// their limits. See bench/README.md.
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, envDuration, envInt, latencyThresholds, sessionCookies, sessionFromEnv } from './lib.js';

const API_PATH = __ENV.API_PATH || '/api/bench';

export const options = {
  scenarios: {
    proxy: {
      executor: 'constant-vus',
      vus: envInt('VUS', 32, 1, 1000),
      duration: envDuration('DURATION', '30s', 3600),
    },
  },
  thresholds: {
    // Every request: the sign-in of setup() too.
    http_req_failed: ['rate<0.01'],
    // The proxied requests only.
    'http_req_duration{kind:proxy}': latencyThresholds(100, 250),
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max'],
};

// setup runs once: every VU uses the same session (as one busy user would).
export function setup() {
  return { sid: sessionFromEnv() };
}

export default function (data) {
  const res = http.get(BASE_URL + API_PATH, {
    cookies: sessionCookies(data.sid),
    tags: { name: 'GET ' + API_PATH, kind: 'proxy' },
  });
  check(res, {
    'proxied: 200': (r) => r.status === 200,
  });
}
