// WebSocket echo through the gateway: VUS virtual users each open a socket
// on WS_PATH (under /api, so authenticated by the session cookie), send a
// MSG_BYTES message every INTERVAL_MS for SESSION_SECONDS, time each echo,
// close, and open the next, for DURATION.
//
//   k6 run -e BASE_URL=http://localhost:8080 -e SID=<cookie value> -e WS_PATH=/api/ws bench/k6/websocket.js
//
// The backend behind WS_PATH must echo WebSocket messages (the dev stack's
// echo backend speaks HTTP only: see bench/README.md).
//
// Environment (defaults): BASE_URL (http://localhost:8080; ws:// or wss:// is
// derived from it), SID or LOGIN=1, WS_PATH (/api/ws), VUS (16, at most 1000),
// DURATION (30s, at most 1h), SESSION_SECONDS (10), INTERVAL_MS (100),
// MSG_BYTES (64, at most 1 MiB), ORIGIN (none: k6 sends no Origin; set it to
// the gateway's APP_BASE_URL origin to upgrade as a browser would), P95_MS
// (50) and P99_MS (100) for a round trip, COOKIE_NAME (sid).
//
// Round trips are timed with Date.now(): millisecond resolution.
import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { BASE_URL, cookieHeader, envDuration, envInt, latencyThresholds, sessionFromEnv } from './lib.js';

const WS_URL = BASE_URL.replace(/^http/, 'ws') + (__ENV.WS_PATH || '/api/ws');
const SESSION_MS = envInt('SESSION_SECONDS', 10, 1, 3600) * 1000;
const INTERVAL_MS = envInt('INTERVAL_MS', 100, 1, 60000);
const MSG_BYTES = envInt('MSG_BYTES', 64, 16, 1 << 20);

const rtt = new Trend('ws_echo_rtt', true);
const wsFailed = new Rate('ws_failed'); // a socket that did not open or broke
const lost = new Counter('ws_echo_lost'); // messages whose echo never came
const wrong = new Counter('ws_echo_wrong'); // echoes that are not what was sent

export const options = {
  scenarios: {
    websocket: {
      executor: 'constant-vus',
      vus: envInt('VUS', 16, 1, 1000),
      duration: envDuration('DURATION', '30s', 3600),
      gracefulStop: `${Math.ceil(SESSION_MS / 1000) + 5}s`,
    },
  },
  thresholds: {
    // HTTP: only the sign-in of setup() with LOGIN=1.
    http_req_failed: ['rate<0.01'],
    ws_failed: ['rate<0.01'],
    ws_echo_rtt: latencyThresholds(50, 100),
    ws_echo_lost: ['count<1'],
    ws_echo_wrong: ['count<1'],
    ws_connecting: ['p(95)<200', 'p(99)<500'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return { sid: sessionFromEnv() };
}

export default function (data) {
  const headers = { Cookie: cookieHeader(data.sid) };
  if (__ENV.ORIGIN) {
    headers.Origin = __ENV.ORIGIN;
  }
  const sent = new Map(); // sequence number -> Date.now() at sending
  let seq = 0;
  let broken = false;
  const res = ws.connect(WS_URL, { headers: headers, tags: { name: 'ws ' + (__ENV.WS_PATH || '/api/ws') } }, (socket) => {
    socket.on('open', () => {
      socket.setInterval(() => {
        seq++;
        const head = `${__VU}:${seq}:`;
        sent.set(head, Date.now());
        socket.send(head + 'x'.repeat(Math.max(0, MSG_BYTES - head.length)));
      }, INTERVAL_MS);
      socket.setTimeout(() => socket.close(), SESSION_MS);
    });
    socket.on('message', (msg) => {
      const head = msg.slice(0, msg.indexOf(':', msg.indexOf(':') + 1) + 1);
      const at = sent.get(head);
      if (at === undefined || msg.length !== MSG_BYTES) {
        wrong.add(1);
        return;
      }
      sent.delete(head);
      rtt.add(Date.now() - at);
    });
    socket.on('error', (e) => {
      if (e.error() === 'websocket: close sent') {
        return; // k6 reports our own close this way
      }
      broken = true;
      console.warn(`VU ${__VU}: websocket error: ${e.error()}`);
    });
  });
  const opened = check(res, { 'upgrade: 101': (r) => r && r.status === 101 });
  wsFailed.add(!opened || broken);
  // The last message may still be in flight at the close; older ones are lost.
  if (opened && sent.size > 1) {
    lost.add(sent.size - 1);
  }
}
