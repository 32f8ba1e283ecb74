// Prefix-cache benchmark (issue 16, goal 4): per round, a fresh DOC-token document with a 32-token
// question (cold: the whole prompt is prefilled), then the same document with another question (warm:
// the document's full blocks come from the prefix cache), then the 32-token question alone (what
// computing the question costs without the document). Time to first token of each, streamed with the
// openai npm client over SSE, and the server's prefix-cache counters.
// Usage: node tools/bench/prefix_cache.mjs BASE_URL MODEL [DOC_TOKENS=4096] [ROUNDS=3]
const root = new URL("../../", import.meta.url);
const { default: OpenAI } = await import(new URL("tests/api-clients/node_modules/openai/index.mjs", root));
const [base, model] = [process.argv[2], process.argv[3]];
const docLen = Number(process.argv[4] ?? 4096), rounds = Number(process.argv[5] ?? 3);
const client = new OpenAI({ baseURL: base + "/v1", apiKey: "none" });
const ids = (n, seed) => Array.from({ length: n }, (_, i) => 100 + ((i * 7919 + seed * 104729) % 20000));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const status = async () => (await fetch(`${base}/v1/models/${model}/scheduler`)).json();

async function ttft(prompt) {
  const t0 = performance.now();
  const stream = await client.completions.create({ model, prompt, max_tokens: 1, stream: true, temperature: 0, ignore_eos: true });
  let first = null;
  for await (const _ of stream) first ??= performance.now() - t0;
  return first;
}

await ttft(ids(16, 1)); // warm-up (JIT)
const cold = [], warm = [], question = [], hits = [], copyIn = [], copyOut = [];
for (let r = 0; r < rounds; r++) {
  const doc = ids(docLen, 100 + r);
  const s0 = await status();
  cold.push(await ttft([...doc, ...ids(32, 200 + r)]));
  const s1 = await status();
  warm.push(await ttft([...doc, ...ids(32, 300 + r)]));
  const s2 = await status();
  hits.push(s2.prefix_cache_hit_tokens - s1.prefix_cache_hit_tokens);
  copyOut.push((s1.prefix_cache_copy_out_seconds - s0.prefix_cache_copy_out_seconds) * 1000); // the cold request caching its blocks
  copyIn.push((s2.prefix_cache_copy_in_seconds - s1.prefix_cache_copy_in_seconds) * 1000);   // the warm request copying them in
  question.push(await ttft(ids(32, 400 + r)));
}
const s = await status();
console.log(JSON.stringify({
  doc_tokens: docLen, question_tokens: 32, rounds,
  cold_ttft_ms: cold.map(Math.round), warm_ttft_ms: warm.map(Math.round), question_alone_ttft_ms: question.map(Math.round),
  hit_tokens_per_warm_request: hits,
  copy_in_ms: copyIn.map((x) => +x.toFixed(1)), copy_out_ms_during_cold: copyOut.map((x) => +x.toFixed(1)),
  median_cold_ms: Math.round(median(cold)), median_warm_ms: Math.round(median(warm)), median_question_alone_ms: Math.round(median(question)),
  warm_over_cold: +(median(warm) / median(cold)).toFixed(4),
  prefix_cache: { blocks: s.prefix_cache_blocks, bytes: s.prefix_cache_bytes, queried_tokens: s.prefix_cache_queried_tokens, hit_tokens: s.prefix_cache_hit_tokens },
}));
