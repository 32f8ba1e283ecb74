// Reliability probe against a running PiServe host (loopback only): load with aborted streams,
// slow clients holding sockets, many SignalR connections, and bad input, with every loop bounded in
// count and time. Prints one JSON object of figures; docs/RELIABILITY.md records them.
// Usage: node tools/reliability/probe.mjs http://127.0.0.1:PORT MODEL
import net from "node:net";
import { createRequire } from "node:module";
const require = createRequire(new URL("../../tests/api-clients/package.json", import.meta.url));
const signalR = require("@microsoft/signalr");

const [base, model] = [process.argv[2], process.argv[3] ?? "kjv-base-256"];
const url = new URL(base);
const now = () => performance.now();
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : null; };
const json = async (path, body) => {
  const r = await fetch(base + path, body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json().catch(() => null) };
};
const scheduler = async () => (await json(`/v1/models/${model}/scheduler`)).body;
const rss = async () => {
  const text = await (await fetch(base + "/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith("process_resident_memory_bytes "));
  return line ? Number(line.split(" ")[1]) : null;
};
async function drained(ms = 20000) {
  const t0 = now();
  for (;;) {
    const s = await scheduler();
    if (s.running === 0 && s.waiting === 0 && s.kv_reserved_bytes === 0) return { ok: true, ms: Math.round(now() - t0) };
    if (now() - t0 > ms) return { ok: false, state: s };
    await new Promise((r) => setTimeout(r, 50));
  }
}

// One streaming completion; abortAfter = number of SSE events after which the client hangs up.
async function stream(prompt, maxTokens, abortAfter) {
  const ac = new AbortController();
  const t0 = now();
  let events = 0, first = null, finish = null, status = 0;
  try {
    const r = await fetch(base + "/v1/completions", {
      method: "POST", signal: ac.signal, headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, prompt, max_tokens: maxTokens, stream: true, ignore_eos: true, temperature: 0.8, seed: events }),
    });
    status = r.status;
    if (r.status !== 200) return { status, aborted: false };
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, i); buf = buf.slice(i + 2);
        if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
        events++;
        first ??= now() - t0;
        const c = JSON.parse(ev.slice(6));
        finish = c.choices?.[0]?.finish_reason ?? finish;
        if (abortAfter !== null && events >= abortAfter) { ac.abort(); return { status, aborted: true, first, events }; }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") return { status, aborted: true, first, events };
    return { status, error: String(e) };
  }
  return { status, aborted: false, first, events, finish, total: now() - t0 };
}

const out = { base, model };

// 1. Load: rounds of 32 concurrent streams, half hung up at a random event.
{
  const t0 = now();
  const results = [];
  let seed = 1;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < 4; round++) {
    const batch = Array.from({ length: 32 }, (_, i) => stream("And it came to pass", 48, i % 2 ? 1 + Math.floor(rand() * 20) : null));
    results.push(...(await Promise.all(batch)));
  }
  const done = results.filter((r) => r.status === 200 && !r.aborted);
  out.load = {
    requests: results.length, completed: done.length, aborted: results.filter((r) => r.aborted).length,
    non_200: results.filter((r) => r.status !== 200).map((r) => r.status),
    all_finished_with_length: done.every((r) => r.finish === "length"),
    ttft_ms_p50: Math.round(pct(results.map((r) => r.first).filter((x) => x != null), 0.5)),
    ttft_ms_p99: Math.round(pct(results.map((r) => r.first).filter((x) => x != null), 0.99)),
    seconds: +((now() - t0) / 1000).toFixed(1), drained: await drained(), rss_bytes: await rss(),
  };
}

// 2. Slow clients: 100 sockets send a partial request line and then a header byte every 2 s for 12 s,
//    while 20 ordinary requests are served.
{
  const sockets = [];
  for (let i = 0; i < 100; i++) {
    const s = net.connect(Number(url.port), url.hostname);
    s.on("error", () => {});
    s.write("POST /v1/completions HTTP/1.1\r\nHost: x\r\n");
    sockets.push(s);
  }
  const drip = setInterval(() => sockets.forEach((s) => s.writable && s.write("X-a: b\r\n")), 2000);
  const t0 = now();
  const ok = [];
  for (let i = 0; i < 20; i++) {
    const a = now();
    const r = await json("/v1/completions", { model, prompt: "In the beginning", max_tokens: 8 });
    ok.push({ status: r.status, ms: now() - a });
    await new Promise((r) => setTimeout(r, 500));
  }
  clearInterval(drip);
  const open = sockets.filter((s) => !s.destroyed).length;
  sockets.forEach((s) => s.destroy());
  out.slow_clients = {
    sockets: 100, held_seconds: +((now() - t0) / 1000).toFixed(1), still_open_at_end: open,
    normal_requests: ok.length, normal_ok: ok.filter((r) => r.status === 200).length,
    normal_ms_p50: Math.round(pct(ok.map((r) => r.ms), 0.5)), normal_ms_max: Math.round(Math.max(...ok.map((r) => r.ms))),
  };
}

// 3. SignalR: 100 connections, each streams 8 tokens; a quarter cancel after 2 events.
{
  const t0 = now();
  const runs = await Promise.all(Array.from({ length: 100 }, async (_, i) => {
    const c = new signalR.HubConnectionBuilder().withUrl(base + "/hubs/generation").configureLogging(signalR.LogLevel.None).build();
    try {
      await c.start();
      const n = await new Promise((resolve, reject) => {
        let count = 0;
        const sub = c.stream("StreamCompletion", { model, prompt: "And God said", max_tokens: 8, ignore_eos: true }).subscribe({
          next: () => { if (++count === 2 && i % 4 === 0) { sub.dispose(); resolve(-count); } },
          complete: () => resolve(count), error: reject,
        });
      });
      return { ok: true, events: n };
    } catch (e) {
      return { ok: false, error: String(e) };
    } finally {
      await c.stop();
    }
  }));
  out.signalr = {
    connections: 100, ok: runs.filter((r) => r.ok).length, cancelled: runs.filter((r) => r.ok && r.events < 0).length,
    refused_429: runs.filter((r) => !r.ok && r.error.includes("429")).length,
    completed_with_finish: runs.filter((r) => r.ok && r.events === 9).length,
    other_errors: [...new Set(runs.filter((r) => !r.ok && !r.error.includes("429")).map((r) => r.error))].slice(0, 3),
    seconds: +((now() - t0) / 1000).toFixed(1), drained: await drained(),
  };
}

// 4. Bad input: 400 hostile bodies of the kinds; every answer below 500 with a JSON error.
{
  const bodies = [
    { model, prompt: "x", max_tokens: 2147483647, stream: true, ignore_eos: true },
    { model, messages: [null] }, { model, messages: [{ role: "user", content: ["hi"] }] },
    { model, prompt: "x", rope_scaling: { rope_type: "linear", factor: 1e-30 } },
    { model, prompt: "x", rope_scaling: { rope_type: "yarn", factor: 4, beta_fast: 1, beta_slow: 32 } },
    { model, prompt: "x", rope_scaling: { rope_type: "linear", factor: 2, nope: 1 } },
    { model, prompt: [1, -1] }, { model, prompt: "x", max_tokens: 2147483648 }, { model, prompt: "\u0000\ud800" },
  ];
  const paths = ["/v1/completions", "/v1/chat/completions", "/tokenize"];
  const statuses = {};
  let fivexx = 0, noJson = 0, n = 0;
  for (let i = 0; i < 400; i++) {
    const body = bodies[i % bodies.length];
    const r = await json(paths[i % paths.length], body);
    statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    if (r.status >= 500) fivexx++;
    if (r.status >= 400 && !r.body?.error?.message) noJson++;
    n++;
  }
  const ids = ["a/b", "../../etc", "x".repeat(100000), "x\u0000y", "\u202eevil", "KJV-BASE-256"];
  const variants = [];
  for (const id of ids) variants.push((await json(`/v1/models/${model}/variants`, { id, rope_scaling: { rope_type: "linear", factor: 2 } })).status);
  out.bad_input = { requests: n, statuses, fivexx, error_without_json_body: noJson, variant_id_statuses: variants, drained: await drained() };
}

out.rss_bytes_end = await rss();
console.log(JSON.stringify(out));
