using System.Text;
using System.Text.Json.Nodes;
using PiServe.Api.Tests.Serving;

namespace PiServe.Api.Tests.Fuzz;

/// <summary>
/// Mutated request bodies against the real host: every answer is below 500 with a JSON error body
/// when refused, nothing hangs (each request has a deadline), KV reservations return to zero and the
/// process's resident memory stays bounded. Seeded; see <see cref="Fuzzing"/> for longer runs.
/// </summary>
[Collection("host")]
public class RequestFuzzTests(HostFixture fixture)
{
    private PiServeHostProcess Host => fixture.Host;

    private static readonly (string Path, JsonNode Body)[] Seeds =
    [
        ("/v1/completions", JsonNode.Parse("""{"model":"tiny","prompt":"In the beginning","max_tokens":8,"temperature":0.7,"top_p":0.9,"top_k":5,"seed":3,"stop":["\n"],"logprobs":2,"echo":true,"ignore_eos":true}""")!),
        ("/v1/completions", JsonNode.Parse("""{"model":"tiny","prompt":[1,2,3],"max_tokens":6,"stream":true,"stream_options":{"include_usage":true},"rope_scaling":{"rope_type":"yarn","factor":2,"beta_fast":32,"beta_slow":1},"rope_cache":"planned"}""")!),
        ("/v1/chat/completions", JsonNode.Parse("""{"model":"tiny","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"text","text":"yes"}]},{"role":"user","content":"more"}],"max_tokens":6,"logprobs":true,"top_logprobs":2}""")!),
        ("/v1/chat/completions", JsonNode.Parse("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true,"rope_scaling":{"rope_type":"linear","factor":2}}""")!),
        ("/tokenize", JsonNode.Parse("""{"model":"tiny","prompt":"hello there","add_special_tokens":false}""")!),
        ("/detokenize", JsonNode.Parse("""{"model":"tiny","tokens":[1,15043,727]}""")!),
        ("/v1/evals", JsonNode.Parse("""{"kind":"passkey","model":"tiny","parameters":{"target_length":64,"depths":2,"trials":1,"max_new_tokens":3}}""")!),
        ("/v1/diagnostics/attention-scores", JsonNode.Parse("""{"model":"tiny","text":"a b c d e f g","parameters":{"bucket_size":4,"max_tokens":16}}""")!),
        // The LongRoPE search's short-context readjustment (factors, long_factor) and its search knobs.
        ("/v1/evals", JsonNode.Parse("""{"kind":"longrope-search","model":"tiny","dataset":"kjv-search","parameters":{"factors":"short","long_factor":[1,1.5,2,3,4,6,8,16],"target_length":64,"population":3,"generations":1,"seed":1,"attention_factor":1.0}}""")!),
    ];

    [Fact]
    public async Task MutatedRequestsNeverGet5xxOrHang()
    {
        int seed = Fuzzing.Seed(1304);
        var rng = new Random(seed);
        using var http = new HttpClient { BaseAddress = new Uri(Host.BaseUrl), Timeout = TimeSpan.FromSeconds(60) };
        int iterations = Fuzzing.Iterations(160), refused = 0;
        for (int i = 0; i < iterations; i++)
        {
            var (path, seedBody) = Seeds[rng.Next(Seeds.Length)];
            string body = rng.Next(6) == 0
                ? Encoding.UTF8.GetString(Fuzzing.Damage(Encoding.UTF8.GetBytes(seedBody.ToJsonString()), rng))
                : Fuzzing.Mutate(seedBody, rng).ToJsonString();
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            HttpResponseMessage r;
            string text;
            try
            {
                r = await http.PostAsync(path, content);
                text = await r.Content.ReadAsStringAsync();
            }
            catch (TaskCanceledException)
            {
                Assert.Fail($"seed {seed} iteration {i}: {path} did not answer within 60 s\n{body[..Math.Min(body.Length, 2000)]}");
                return;
            }
            int status = (int)r.StatusCode;
            string replay = $"seed {seed} iteration {i}: {path} answered {status}: {text[..Math.Min(text.Length, 500)]}\nbody: {body[..Math.Min(body.Length, 2000)]}";
            Assert.True(status < 500, replay);
            if (status >= 400)
            {
                refused++;
                Assert.True(JsonNode.Parse(text)?["error"]?["message"] is not null, replay);
            }
            if (path == "/v1/evals" && status == 202) // keep the shared host free: the job only had to be accepted
                await http.DeleteAsync($"/v1/evals/{JsonNode.Parse(text)!["id"]!.GetValue<string>()}");
        }
        Assert.True(refused > iterations / 4, $"only {refused} of {iterations} mutated requests were refused: the mutator is too gentle");

        // Nothing leaked: reservations drain, the host answers, resident memory stays bounded.
        long reserved = -1;
        for (int t = 0; t < 200 && reserved != 0; t++)
        {
            reserved = JsonNode.Parse(await http.GetStringAsync("/v1/models/tiny/scheduler"))!["kv_reserved_bytes"]!.GetValue<long>();
            if (reserved != 0) await Task.Delay(50);
        }
        Assert.Equal(0, reserved);
        Assert.True((await http.GetAsync("/health/live")).IsSuccessStatusCode);
        string metrics = await http.GetStringAsync("/metrics");
        var rss = metrics.Split('\n').First(l => l.StartsWith("process_resident_memory_bytes ", StringComparison.Ordinal));
        double bytes = double.Parse(rss.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(bytes < 2e9, $"resident memory {bytes / 1e6:F0} MB after fuzzing");
    }
}
