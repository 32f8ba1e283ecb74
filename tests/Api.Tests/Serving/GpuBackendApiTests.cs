using System.Text;
using System.Text.Json.Nodes;

namespace PiServe.Api.Tests.Serving;

/// <summary>
/// The host serving a model on the GPU backend's kernels (PiServe:Models:N:Backend = ilgpu-cpu, ILGPU's
/// CPU accelerator: no GPU here or in CI) next to the same model on the CPU engine, and a model
/// configured for cuda on a machine without a CUDA device: that one fails with a clear error in
/// /v1/models and /health/ready while the others serve.
/// </summary>
public class GpuBackendApiTests
{
    [Fact]
    public async Task IlgpuCpuServesLikeTheCpuEngineAndCudaWithoutAGpuFailsThatModelOnly()
    {
        if (File.Exists("/dev/nvidiactl")) return; // a GPU machine would load the cuda model
        using var dir = new TempDir();
        string root = Path.Combine(RepoPaths.Root, "models");
        string[] args =
        [
            $"--PiServe:DataDirectory={Path.Combine(dir.Path, "state")}", $"--PiServe:ModelsRoot={root}",
            "--PiServe:Models:0:Id=device", "--PiServe:Models:0:Path=kjv-base-256", "--PiServe:Models:0:Backend=ilgpu-cpu",
            "--PiServe:Models:1:Id=host", "--PiServe:Models:1:Path=kjv-base-256",
            "--PiServe:Models:2:Id=nocuda", "--PiServe:Models:2:Path=kjv-base-256", "--PiServe:Models:2:Backend=cuda",
        ];
        await using var host = await HostProcess.StartAsync(dir.Path, args);
        // The CPU accelerator runs the GPU kernels thread by thread: slow on a busy CI machine, so a longer timeout than the default.
        using var http = new HttpClient { BaseAddress = new Uri(host.BaseUrl), Timeout = TimeSpan.FromMinutes(5) };

        var cards = JsonNode.Parse(await http.GetStringAsync("/v1/models"))!["data"]!.AsArray();
        JsonNode Card(string id) => cards.Single(m => m!["id"]!.GetValue<string>() == id)!;
        Assert.Equal("loaded", Card("device")["status"]!.GetValue<string>());
        Assert.Equal("ilgpu-cpu", Card("device")["backend"]!.GetValue<string>());
        Assert.Equal("cpu", Card("host")["backend"]!.GetValue<string>());
        Assert.Equal("failed", Card("nocuda")["status"]!.GetValue<string>());
        Assert.Contains("PiServe:Backend is 'cuda' but", Card("nocuda")["error"]!.GetValue<string>());

        var ready = await http.GetAsync("/health/ready");
        Assert.Equal(503, (int)ready.StatusCode);
        Assert.Contains("nocuda", await ready.Content.ReadAsStringAsync());

        // Greedy completions with logprobs: the same tokens, log-probs within the device-vs-CPU bound.
        async Task<JsonNode> Complete(string model)
        {
            var r = await http.PostAsync("/v1/completions", new StringContent(
                $$"""{"model":"{{model}}","prompt":"And the LORD said unto Moses,","max_tokens":6,"temperature":0,"logprobs":1}""", Encoding.UTF8, "application/json"));
            var body = JsonNode.Parse(await r.Content.ReadAsStringAsync())!;
            Assert.True(r.IsSuccessStatusCode, body.ToJsonString());
            return body["choices"]![0]!;
        }
        var device = await Complete("device");
        var cpu = await Complete("host");
        Assert.Equal(cpu["text"]!.GetValue<string>(), device["text"]!.GetValue<string>());
        var a = device["logprobs"]!["token_logprobs"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
        var b = cpu["logprobs"]!["token_logprobs"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
        Assert.Equal(b.Length, a.Length);
        for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(a[i] - b[i]) <= 1e-3, $"token {i}: {a[i]} vs {b[i]}");

        // Streaming and several concurrent requests (batched decode on the device) work too.
        var tasks = Enumerable.Range(0, 3).Select(i => http.PostAsync("/v1/completions", new StringContent(
            $$"""{"model":"device","prompt":"In the beginning","max_tokens":3,"temperature":0.8,"seed":{{i}},"stream":true}""", Encoding.UTF8, "application/json"))).ToArray();
        foreach (var r in await Task.WhenAll(tasks))
        {
            string sse = await r.Content.ReadAsStringAsync();
            Assert.True(r.IsSuccessStatusCode, sse);
            Assert.Contains("data: [DONE]", sse);
        }

        // A prompt of several cache blocks, twice: the prefix cache (host memory) stays off for a device
        // model, so the second request is served like the first, not from copies of a device cache.
        string longPrompt = string.Join(" ", Enumerable.Repeat("And God said, Let there be light: and there was light.", 6));
        var first = await Long();
        Assert.Equal(first, await Long());
        async Task<string> Long()
        {
            var r = await http.PostAsync("/v1/completions", new StringContent(
                $$"""{"model":"device","prompt":"{{longPrompt}}","max_tokens":4,"temperature":0}""", Encoding.UTF8, "application/json"));
            var body = JsonNode.Parse(await r.Content.ReadAsStringAsync())!;
            Assert.True(r.IsSuccessStatusCode, body.ToJsonString());
            Assert.True(body["usage"]!["prompt_tokens"]!.GetValue<int>() > 48);
            return body["choices"]![0]!["text"]!.GetValue<string>();
        }
    }

    /// <summary>The verbs on --backend: score and generate on ilgpu-cpu match the reference; cuda without a GPU and an unknown backend are clear errors.</summary>
    [Fact]
    public void VerbsTakeTheBackend()
    {
        var g = GoldenFixtures.All.First(c => c.Model == "llama-default-f32" && c.Name == "short");
        string model = GoldenFixtures.ModelDir(g.Model), tokens = string.Join(",", g.Tokens);
        (int Code, JsonObject? Out, string Err) Run(params string[] args)
        {
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            int code = PiServe.Api.Verbs.Run(args, stdout, stderr);
            return (code, string.IsNullOrWhiteSpace(stdout.ToString()) ? null : JsonNode.Parse(stdout.ToString())!.AsObject(), stderr.ToString());
        }

        var score = Run("score", "--model", model, "--tokens", tokens, "--backend", "ilgpu-cpu");
        Assert.Equal(0, score.Code);
        var lps = score.Out!["logprobs"]!.AsArray();
        for (int i = 1; i < g.Tokens.Length; i++)
            Assert.InRange(lps[i]!.GetValue<double>() - g.LogProbs[i]!.Value, -1e-3, 1e-3);
        var generate = Run("generate", "--model", model, "--tokens", tokens, "--max-tokens", g.MaxTokens.ToString(), "--backend", "ilgpu-cpu");
        Assert.Equal(0, generate.Code);
        Assert.Equal(g.Full.Tokens, generate.Out!["tokens"]!.AsArray().Select(t => t!.GetValue<int>()));

        if (!File.Exists("/dev/nvidiactl"))
        {
            var cuda = Run("score", "--model", model, "--tokens", tokens, "--backend", "cuda");
            Assert.Equal(1, cuda.Code);
            Assert.Contains("no CUDA device was found", cuda.Err);
        }
        // bench on the device backend (a smoke run: no figure from the CPU accelerator means anything for a GPU).
        var bench = Run("bench", "--shape", "tiny", "--prompt", "8", "--generate", "4", "--backend", "ilgpu-cpu");
        Assert.True(bench.Code == 0, bench.Err);
        Assert.Equal("ilgpu-cpu", bench.Out!["backend"]!.GetValue<string>());
        Assert.True(bench.Out["decode_tokens_per_second"]!.GetValue<double>() > 0);
        Assert.Null(bench.Out["decode_fraction_of_ceiling"]); // a device's bandwidth is not measured: --bandwidth-gbs gives it

        var unknown = Run("score", "--model", model, "--tokens", tokens, "--backend", "tpu");
        Assert.Equal(1, unknown.Code);
        Assert.Contains("not one of cpu, cuda, ilgpu-cpu", unknown.Err);
    }
}
