// Serving benchmark client (issue 16, goal 3): N concurrent streaming /v1/completions requests against
// an OpenAI-compatible server (PiServe or llama-server), each with its own prompt of distinct token ids.
// Reports aggregate generated tokens/s (all tokens over the wall time from the first request to the last
// end), time to first token and inter-token latency as the client receives them.
// Usage: node tools/bench/serve_streams.mjs BASE_URL MODEL STREAMS [PROMPT_TOKENS=128] [MAX_TOKENS=64] [SEED=1]
// A token counts when an SSE event carries text (llama-server holds back the bytes of an incomplete
// UTF-8 character until it completes; PiServe does the same for tokens without text).
import { streamCompletion } from "./sse.mjs";
const [base, model] = [process.argv[2], process.argv[3]];
const streams = Number(process.argv[4]), promptLen = Number(process.argv[5] ?? 128), maxTokens = Number(process.argv[6] ?? 64);
const seed = Number(process.argv[7] ?? 1);
const now = () => performance.now();
// Distinct ids per request (no shared prefix for a prompt cache to reuse), away from the special and byte tokens.
const ids = (n, s) => Array.from({ length: n }, (_, i) => 300 + ((i * 7919 + s * 104729) % 30000));
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s.length ? +s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(1) : null; };

async function stream(prompt) {
  const start = now(), times = [];
  await streamCompletion(base, { model, prompt, max_tokens: maxTokens, ignore_eos: true, temperature: 0 },
    (d, t) => { if (d.choices?.some((c) => c.text)) times.push(t); });
  return { start, end: now(), times };
}

const t0 = now();
const results = await Promise.all(Array.from({ length: streams }, (_, s) => stream(ids(promptLen, seed * 1000 + s))));
const wall = (now() - t0) / 1000;
const tokens = results.reduce((a, r) => a + r.times.length, 0);
const ttft = results.map((r) => r.times[0] - r.start);
const itl = results.flatMap((r) => r.times.slice(1).map((t, i) => t - r.times[i]));
console.log(JSON.stringify({
  streams, prompt_tokens: promptLen, max_tokens: maxTokens, tokens, seconds: +wall.toFixed(3),
  tokens_per_second: +(tokens / wall).toFixed(1),
  ttft_ms: { p50: pct(ttft, 0.5), p99: pct(ttft, 0.99), max: pct(ttft, 1) },
  itl_ms: { p50: pct(itl, 0.5), p99: pct(itl, 0.99), max: pct(itl, 1) },
}));
