/**
 * The floor for the ingest benchmark: a `ws` server that only receives the same Twilio traffic
 * (no parsing, no decoding, no ASR). GET /stats → event-loop delay and message counts since the
 * previous /stats call.
 */
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { WebSocketServer } from 'ws';

const port = Number(process.env['PORT'] ?? 0);
const eld = monitorEventLoopDelay({ resolution: 10 });
eld.enable();
let messages = 0;
let bytes = 0;

const server = http.createServer((req, res) => {
  if (req.url === '/stats') {
    const body = JSON.stringify({
      eldP50Ms: eld.percentile(50) / 1e6,
      eldP99Ms: eld.percentile(99) / 1e6,
      messages,
      bytes,
    });
    eld.reset();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
    return;
  }
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ server, path: '/twilio', maxPayload: 64 * 1024, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data: Buffer) => {
    messages++;
    bytes += data.length;
  });
});
server.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`READY ${typeof addr === 'object' && addr ? addr.port : port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
