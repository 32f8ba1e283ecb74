// Serving benchmark for chunked prefill (issue 16): N streams decode while one long prompt arrives.
// Reports the long prompt's time to first token alone and under load, and the inter-token latency of
// the running streams while it is prefilled versus before it arrived. Each round measures the prompt
// alone and then under load back to back (a fresh prompt each time, so the prefix cache answers
// nothing), and the streams are cancelled at the end of a round: on a shared host the machine's speed
// drifts between minutes, so a ratio is only formed from the two halves of one round.
// Usage: node tools/bench/chunked_prefill.mjs BASE_URL MODEL [LONG_TOKENS=4096] [STREAMS=8] [ROUNDS=1]
import { streamCompletion } from "./sse.mjs";
const [base, model] = [process.argv[2], process.argv[3]];
const longLen = Number(process.argv[4] ?? 4096), streams = Number(process.argv[5] ?? 8), rounds = Number(process.argv[6] ?? 1);
const now = () => performance.now();
const ids = (n, seed) => Array.from({ length: n }, (_, i) => 100 + ((i * 7919 + seed * 104729) % 20000));
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s.length ? +s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(1) : null; };
const median = (xs) => pct(xs, 0.5);

const stream = (prompt, maxTokens, onToken, signal) => streamCompletion(base,
  { model, prompt, max_tokens: maxTokens, ignore_eos: true, temperature: 0 }, (_, t) => onToken(t), signal);

async function round(r) {
  // The long prompt alone.
  let t0 = now(), ttftAlone = null;
  await stream(ids(longLen, 1000 + 2 * r), 1, (t) => { ttftAlone ??= t - t0; });

  // Under load: streams decoding, the long prompt arrives after 2 s.
  const abort = new AbortController();
  const times = Array.from({ length: streams }, () => []);
  const running = times.map((ts, s) => stream(ids(100, 10 + s + 100 * r), 1500, (t) => ts.push(t), abort.signal).catch(() => {}));
  await new Promise((res) => setTimeout(res, 2000));
  const arrive = now();
  let firstLong = null;
  await stream(ids(longLen, 1001 + 2 * r), 1, (t) => { firstLong ??= t; });
  abort.abort();
  await Promise.all(running);
  const ttftLoaded = firstLong - arrive;
  const gaps = (from, to) => times.flatMap((ts) => ts.slice(1).map((t, i) => [ts[i], t]).filter(([a, b]) => b > from && b <= to).map(([a, b]) => b - a));
  const during = gaps(arrive, firstLong), before = gaps(arrive - 1500, arrive);
  const itlBefore = { p50: pct(before, 0.5), p99: pct(before, 0.99), n: before.length };
  const itlDuring = { p50: pct(during, 0.5), p99: pct(during, 0.99), max: pct(during, 1), n: during.length };
  return {
    ttft_alone_ms: Math.round(ttftAlone), ttft_under_load_ms: Math.round(ttftLoaded), ttft_ratio: +(ttftLoaded / ttftAlone).toFixed(2),
    itl_before_ms: itlBefore, itl_during_prefill_ms: itlDuring, itl_p99_ratio: +(itlDuring.p99 / itlBefore.p99).toFixed(2),
  };
}

await stream(ids(16, 1), 2, () => {}); // warm-up
const results = [];
for (let r = 0; r < rounds; r++) {
  results.push(await round(r));
  await new Promise((res) => setTimeout(res, 500)); // let the cancelled streams leave the scheduler
}
// The server's own inter-token latencies (its histogram, over the whole run) tell a stall in the
// scheduler from one in delivery: buckets above 1 s.
const metrics = await (await fetch(base + "/metrics")).text();
const buckets = Object.fromEntries(metrics.split("\n")
  .filter((l) => l.startsWith(`piserve_inter_token_latency_seconds_bucket{model="${model}"`))
  .map((l) => [l.match(/le="([^"]+)"/)[1], Number(l.split(" ").pop())]));
const serverItl = { total: buckets["+Inf"], over_1s: buckets["+Inf"] - buckets["1"], over_2_5s: buckets["+Inf"] - buckets["2.5"] };
console.log(JSON.stringify({
  long_tokens: longLen, streams, rounds,
  median_ttft_ratio: median(results.map((x) => x.ttft_ratio)), median_itl_p99_ratio: median(results.map((x) => x.itl_p99_ratio)),
  server_itl_counts: serverItl, per_round: results,
}));
process.exit(0); // keep-alive sockets would hold the process open
