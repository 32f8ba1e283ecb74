// Serving benchmark for chunked prefill (issue 16): N streams decode while one long prompt arrives.
// Reports the long prompt's time to first token (alone, then under load) and the inter-token latency of
// the running streams while it is prefilled versus before it arrived.
// Usage: node tools/bench/chunked_prefill.mjs BASE_URL MODEL [LONG_TOKENS=4096] [STREAMS=8]
import { streamCompletion } from "./sse.mjs";
const [base, model] = [process.argv[2], process.argv[3]];
const longLen = Number(process.argv[4] ?? 4096), streams = Number(process.argv[5] ?? 8);
const now = () => performance.now();
const ids = (n, seed) => Array.from({ length: n }, (_, i) => 100 + ((i * 7919 + seed * 104729) % 20000));
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s.length ? +s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(1) : null; };

const stream = (prompt, maxTokens, onToken) => streamCompletion(base,
  { model, prompt, max_tokens: maxTokens, ignore_eos: true, temperature: 0 }, (_, t) => onToken(t));

// The long prompt alone (warm-up first with a short request).
await stream(ids(16, 1), 2, () => {});
let t0 = now(), ttftAlone = null;
await stream(ids(longLen, 2), 1, (t) => { ttftAlone ??= t - t0; });

// Under load: streams decoding, the long prompt arrives after 2 s.
const times = Array.from({ length: streams }, () => []);
const running = times.map((ts, s) => stream(ids(100, 10 + s), 1500, (t) => ts.push(t)).catch(() => {}));
await new Promise((r) => setTimeout(r, 2000));
const arrive = now();
let firstLong = null;
await stream(ids(longLen, 3), 1, (t) => { firstLong ??= t; });
const ttftLoaded = firstLong - arrive;
const gaps = (from, to) => times.flatMap((ts) => ts.slice(1).map((t, i) => [ts[i], t]).filter(([a, b]) => b > from && b <= to).map(([a, b]) => b - a));
const during = gaps(arrive, firstLong), before = gaps(arrive - 1500, arrive);
// The server's own inter-token latencies (its histogram, over the whole run) tell a stall in the
// scheduler from one in delivery: buckets above 1 s.
const metrics = await (await fetch(base + "/metrics")).text();
const buckets = Object.fromEntries(metrics.split("\n")
  .filter((l) => l.startsWith(`piserve_inter_token_latency_seconds_bucket{model="${model}"`))
  .map((l) => [l.match(/le="([^"]+)"/)[1], Number(l.split(" ").pop())]));
const serverItl = { total: buckets["+Inf"], over_1s: buckets["+Inf"] - buckets["1"], over_2_5s: buckets["+Inf"] - buckets["2.5"] };
console.log(JSON.stringify({
  server_itl_counts: serverItl,
  long_tokens: longLen, streams,
  ttft_alone_ms: Math.round(ttftAlone), ttft_under_load_ms: Math.round(ttftLoaded), ttft_ratio: +(ttftLoaded / ttftAlone).toFixed(2),
  itl_before_ms: { p50: pct(before, 0.5), p99: pct(before, 0.99), n: before.length },
  itl_during_prefill_ms: { p50: pct(during, 0.5), p99: pct(during, 0.99), max: pct(during, 1), n: during.length },
}));
process.exit(0); // the decoding streams are left to the server to cancel
