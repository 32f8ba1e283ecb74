// Drives a running PiServe host with the official clients (openai, @microsoft/signalr).
// Usage: node run.mjs SCENARIO < {"baseUrl": "...", "apiKey": "...", ...}; prints one JSON result.
import OpenAI from "openai";
import * as signalR from "@microsoft/signalr";
import SwaggerParser from "@apidevtools/swagger-parser";

const input = JSON.parse(await new Promise((resolve) => {
  let s = "";
  process.stdin.on("data", (d) => (s += d));
  process.stdin.on("end", () => resolve(s));
}));
const scenario = process.argv[2];
const client = new OpenAI({ baseURL: `${input.baseUrl}/v1`, apiKey: input.apiKey ?? "none", maxRetries: 0 });

async function streamCompletion(request) {
  const stream = await client.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
  let text = "", finish = null, chunks = 0, usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish_reason: finish, chunks, usage };
}

async function streamChat(request) {
  const stream = await client.chat.completions.create({ ...request, stream: true });
  let text = "", finish = null, chunks = 0, role = null;
  for await (const chunk of stream) {
    chunks++;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      text += c.delta.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish_reason: finish, chunks, role };
}

async function signalrStream(request, cancelAfter) {
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${input.baseUrl}/hubs/generation`, input.apiKey ? { accessTokenFactory: () => input.apiKey } : {})
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  await connection.start();
  const events = [];
  try {
    await new Promise((resolve, reject) => {
      const subscription = connection.stream("StreamCompletion", request).subscribe({
        next: (e) => {
          events.push(e);
          if (cancelAfter && events.length >= cancelAfter) {
            subscription.dispose(); // sends CancelInvocation to the server
            resolve();
          }
        },
        complete: resolve,
        error: reject,
      });
    });
  } catch (e) {
    await connection.stop();
    return { error: String(e.message ?? e), events };
  }
  // give the server a moment to observe a cancellation before the connection closes
  if (cancelAfter) await new Promise((r) => setTimeout(r, input.holdMs ?? 300));
  await connection.stop();
  return { events };
}

// Listens for "EvalProgress" on the hub, submits an eval job over HTTP, and collects the job's
// progress events until it reaches a terminal state (or times out).
async function evalProgress(request, timeoutMs) {
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${input.baseUrl}/hubs/generation`, input.apiKey ? { accessTokenFactory: () => input.apiKey } : {})
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  const events = [];
  let id = null, finish;
  const finished = new Promise((resolve) => (finish = resolve));
  connection.on("EvalProgress", (job) => {
    events.push(job);
    if (id && job.id === id && ["succeeded", "failed", "cancelled"].includes(job.state)) finish();
  });
  await connection.start();
  const response = await fetch(`${input.baseUrl}/v1/evals`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(request),
  });
  const job = await response.json();
  id = job.id;
  if (events.some((e) => e.id === id && ["succeeded", "failed", "cancelled"].includes(e.state))) finish();
  const timer = setTimeout(finish, timeoutMs ?? 60000);
  await finished;
  clearTimeout(timer);
  await connection.stop();
  return { status: response.status, job, events: events.filter((e) => e.id === id) };
}

let result;
try {
  switch (scenario) {
    case "models":
      result = await client.models.list();
      result = { data: result.data };
      break;
    case "completion":
      result = await client.completions.create(input.request);
      break;
    case "completion_stream":
      result = await streamCompletion(input.request);
      break;
    case "concurrent_streams": {
      const started = Date.now();
      const results = await Promise.all(input.requests.map((r) => streamCompletion(r)));
      result = { results, seconds: (Date.now() - started) / 1000 };
      break;
    }
    case "chat":
      result = await client.chat.completions.create(input.request);
      break;
    case "chat_stream":
      result = await streamChat(input.request);
      break;
    case "signalr":
      result = await signalrStream(input.request, input.cancelAfter);
      break;
    case "eval_progress":
      result = await evalProgress(input.request, input.timeoutMs);
      break;
    case "swagger": {
      const doc = await (await fetch(`${input.baseUrl}/swagger/v1/swagger.json`)).json();
      const api = await SwaggerParser.validate(doc);
      result = { valid: true, openapi: api.openapi, paths: Object.keys(api.paths) };
      break;
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
} catch (e) {
  result = { error: String(e.message ?? e), status: e.status ?? null, body: e.error ?? null };
}
process.stdout.write(JSON.stringify(result));
