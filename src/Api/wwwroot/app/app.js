// PiServe's page: a playground streaming tokens over SignalR, and evaluation jobs with live
// progress and charts. Plain browser JavaScript; Chart.js and the SignalR client are vendored in lib/.
"use strict";

const $ = (id) => document.getElementById(id);
const hub = new signalR.HubConnectionBuilder().withUrl("/hubs/generation").withAutomaticReconnect().build();
const charts = {};          // Chart.js instances by name (the browser tests read their data)
window.piserveCharts = charts;
let subscription = null;    // the running StreamCompletion stream
let watchedJob = null;      // the evaluation job whose progress the bar shows

async function json(url, options) {
  const r = await fetch(url, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body?.error?.message ?? `${r.status}`);
  return body;
}

// ---- tabs -------------------------------------------------------------------------------------
document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => {
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
  document.querySelectorAll(".view").forEach((v) => v.classList.toggle("active", v.id === tab.dataset.view));
}));

// ---- playground -------------------------------------------------------------------------------
async function loadModels() {
  const models = (await json("/v1/models")).data.filter((m) => m.status === "loaded");
  for (const select of [$("model"), $("eval-model")]) {
    select.innerHTML = "";
    for (const m of models) select.add(new Option(`${m.id} (${m.rope_scaling.rope_type}, ${m.max_model_len})`, m.id));
  }
}

function completionRequest() {
  const request = {
    model: $("model").value,
    prompt: $("prompt").value,
    max_tokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    top_k: Number($("top-k").value),
  };
  if ($("seed").value !== "") request.seed = Number($("seed").value);
  if ($("rope-type").value) request.rope_scaling = { rope_type: $("rope-type").value, factor: Number($("rope-factor").value) };
  return request;
}

function generate() {
  $("output").textContent = "";
  $("status").textContent = "generating…";
  $("generate").disabled = true;
  $("stop").disabled = false;
  let tokens = 0;
  const started = performance.now();
  const finish = (text) => {
    subscription = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
    $("status").textContent = text;
  };
  subscription = hub.stream("StreamCompletion", completionRequest()).subscribe({
    next: (e) => {
      $("output").textContent += e.text;
      if (e.type === "token") tokens++;
      const seconds = (performance.now() - started) / 1000;
      $("status").textContent = `${tokens} tokens, ${(tokens / seconds).toFixed(1)} tok/s`;
      if (e.type === "finish") finish(`${tokens} tokens, ${(tokens / seconds).toFixed(1)} tok/s, finish: ${e.finish_reason}`);
    },
    complete: () => { if (subscription) finish($("status").textContent); },
    error: (err) => finish(`error: ${err.message ?? err}`),
  });
}

function stop() {
  if (!subscription) return;
  subscription.dispose(); // tells the server to cancel: generation stops at the next step
  subscription = null;
  $("generate").disabled = false;
  $("stop").disabled = true;
  $("status").textContent += " (stopped)";
}

// ---- evaluations ------------------------------------------------------------------------------
const defaults = {
  perplexity: { windows: [64, 128], stride: 64, max_documents: 2, max_tokens: 256 },
  passkey: { lengths: [128, 256], depths: 3, trials: 2, seed: 1 },
  govreport: { max_input_tokens: 256, max_new_tokens: 32, max_documents: 2, seed: 1 },
  "longrope-search": { target_length: 256, population: 4, generations: 2, seed: 1 },
};

function fillDefaults() {
  $("eval-parameters").value = JSON.stringify(defaults[$("eval-kind").value]);
}

async function loadDatasets() {
  const select = $("eval-dataset");
  select.innerHTML = "";
  select.add(new Option("(none)", ""));
  for (const d of (await json("/v1/datasets")).data ?? []) select.add(new Option(`${d.id} (${d.kind})`, d.id));
}

async function startEval() {
  $("eval-status").textContent = "starting…";
  try {
    const body = { kind: $("eval-kind").value, model: $("eval-model").value, parameters: JSON.parse($("eval-parameters").value || "{}") };
    if ($("eval-dataset").value) body.dataset = $("eval-dataset").value;
    const job = await json("/v1/evals", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    watchedJob = job.id;
    showProgress(job);
    poll(job.id);
  } catch (e) {
    $("eval-status").textContent = `error: ${e.message}`;
  }
}

function showProgress(job) {
  const p = job.progress ?? {};
  const fraction = p.total ? p.done / p.total : job.state === "succeeded" ? 1 : 0;
  $("eval-progress").style.width = `${Math.round(fraction * 100)}%`;
  $("eval-status").textContent = `${job.id}: ${job.state} ${p.done ?? 0}/${p.total ?? "?"}` + (job.error ? ` — ${job.error}` : "");
}

// Progress arrives over SignalR; polling is the fallback and fetches the results at the end.
async function poll(id) {
  while (watchedJob === id) {
    const job = await json(`/v1/evals/${id}`);
    showProgress(job);
    if (["succeeded", "failed", "cancelled"].includes(job.state)) {
      if (job.results) render(job);
      await loadJobs();
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function loadJobs() {
  const jobs = (await json("/v1/evals")).data ?? [];
  const body = $("jobs").querySelector("tbody");
  body.innerHTML = "";
  for (const j of jobs) {
    const row = body.insertRow();
    for (const v of [j.id, j.kind, j.model, j.dataset ?? "", j.state, `${j.progress?.done ?? 0}/${j.progress?.total ?? "?"}`]) row.insertCell().textContent = v;
  }
}

function render(job) {
  if (job.kind === "perplexity") renderPerplexity(job);
  if (job.kind === "passkey") renderPasskey(job.results);
  if (job.kind === "govreport") renderRouge(job.results);
  if (job.kind === "longrope-search") renderFactors(job.results);
}

function renderPerplexity(job) {
  const points = job.results.windows.map((w) => ({ x: w.window, y: w.ppl }));
  const label = `${job.model}${job.rope_scaling ? " " + job.rope_scaling.rope_type : ""} (${job.id})`;
  if (!charts.perplexity) {
    charts.perplexity = new Chart($("chart-perplexity"), {
      type: "line",
      data: { datasets: [] },
      options: { animation: false, parsing: false, scales: { x: { type: "linear", title: { display: true, text: "window (tokens)" } }, y: { title: { display: true, text: "perplexity" } } } },
    });
  }
  charts.perplexity.data.datasets.push({ label, data: points });
  charts.perplexity.update();
}

// A heatmap drawn on a plain canvas: x = context length, y = depth of the key, colour = success rate.
function renderPasskey(results) {
  const canvas = $("chart-passkey");
  const ctx = canvas.getContext("2d");
  const lengths = [...new Set(results.points.map((p) => p.length))].sort((a, b) => a - b);
  const depths = [...new Set(results.points.map((p) => p.depth))].sort((a, b) => a - b);
  const w = (canvas.width - 60) / lengths.length, h = (canvas.height - 30) / depths.length;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "11px sans-serif";
  for (const p of results.points) {
    const x = 60 + lengths.indexOf(p.length) * w, y = depths.indexOf(p.depth) * h;
    ctx.fillStyle = `hsl(${120 * p.success_rate}, 70%, 45%)`;
    ctx.fillRect(x, y, w - 1, h - 1);
  }
  ctx.fillStyle = "#1d2330";
  lengths.forEach((l, i) => ctx.fillText(String(l), 60 + i * w + 2, canvas.height - 10));
  depths.forEach((d, i) => ctx.fillText(String(d), 2, i * h + h / 2));
  charts.passkey = { points: results.points.length, k_max: results.k_max };
}

function renderRouge(results) {
  const body = $("rouge-table").querySelector("tbody");
  body.innerHTML = "";
  for (const m of ["rouge1", "rouge2", "rougeL", "rougeLsum"]) {
    const row = body.insertRow();
    row.insertCell().textContent = m;
    for (const k of ["precision", "recall", "f1"]) row.insertCell().textContent = results[m][k].toFixed(4);
  }
}

function renderFactors(results) {
  const best = results.best ?? results;
  const factors = best.long_factor ?? best.factors ?? [];
  charts.longrope?.destroy();
  charts.longrope = new Chart($("chart-longrope"), {
    type: "line",
    data: { labels: factors.map((_, i) => i), datasets: [{ label: "rescale factor λ_i", data: factors }] },
    options: { animation: false },
  });
}

// ---- start ------------------------------------------------------------------------------------
hub.on("EvalProgress", (job) => { if (job.id === watchedJob) showProgress(job); });
$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", stop);
$("eval-start").addEventListener("click", startEval);
$("eval-kind").addEventListener("change", fillDefaults);
fillDefaults();
Promise.all([hub.start(), loadModels(), loadDatasets(), loadJobs()])
  .then(() => { document.body.dataset.ready = "true"; })
  .catch((e) => { $("status").textContent = `error: ${e.message}`; });
