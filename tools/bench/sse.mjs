// Streams POST BASE/v1/completions with `body` (stream: true is added) and calls onEvent(json, time)
// for every SSE data event carrying a JSON object, with performance.now() at its arrival. Shared by
// the serving benchmarks (chunked_prefill.mjs, serve_streams.mjs).
// `signal` (optional) aborts the request: the server cancels the generation.
export async function streamCompletion(base, body, onEvent, signal) {
  const r = await fetch(base + "/v1/completions", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }), signal,
  });
  if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`);
  const reader = r.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i); buf = buf.slice(i + 2);
      if (ev.startsWith("data: {")) onEvent(JSON.parse(ev.slice(6)), performance.now());
    }
  }
}
