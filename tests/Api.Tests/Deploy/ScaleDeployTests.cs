using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using PiServe.Api.Tests.Serving;

namespace PiServe.Api.Tests.Deploy;

/// <summary>Starts a second PiServe host (same "tiny" weights: the checkpoint is written from a fixed seed) for the load-balancer tests.</summary>
public sealed class SecondHostFixture : IAsyncLifetime
{
    public PiServeHostProcess Host { get; private set; } = null!;
    public async Task InitializeAsync() => Host = await PiServeHostProcess.StartAsync();
    public async Task DisposeAsync() => await Host.DisposeAsync();
}

/// <summary>
/// The compose profile "scale" (docs/SCALING.md), checked without a Docker engine: the compose file
/// with the profile validates and has the services it should, the shipped nginx config passes
/// <c>nginx -t</c> and, run by a real nginx in front of two real hosts, balances HTTP, streams SSE,
/// and keeps a SignalR connection on one replica; the scale Prometheus config validates; the
/// dashboard filters every query by instance.
/// </summary>
[Collection("host")]
public partial class ScaleDeployTests(HostFixture fixture, SecondHostFixture second) : IClassFixture<SecondHostFixture>
{
    private static string RepoFile(params string[] parts) => Path.Combine([RepoPaths.Root, .. parts]);

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var (code, stdout, stderr) = ProcessRunner.Run(file, args, RepoPaths.Root, timeout: TimeSpan.FromSeconds(60));
        return (code, stdout + stderr);
    }

    // ---- docker-compose.yml ----------------------------------------------------------------------

    /// <summary>
    /// `docker-compose [--profile scale] config` as JSON, parsed by the YAML library docker-compose
    /// itself runs on (Debian's docker-compose is Python; its interpreter has PyYAML).
    /// </summary>
    private static JsonObject ComposeConfig(params string[] profileArgs)
    {
        string compose = ProcessRunner.FindOnPath("docker-compose")!;
        var (code, yaml, stderr) = ProcessRunner.Run(compose, [.. profileArgs, "-f", "docker-compose.yml", "config"], RepoPaths.Root, timeout: TimeSpan.FromSeconds(60));
        Assert.True(code == 0, $"docker-compose config failed:\n{stderr}");
        string shebang = File.ReadLines(compose).First();
        string python = shebang.StartsWith("#!/", StringComparison.Ordinal) && shebang.Contains("python") ? shebang[2..].Trim().Split(' ')[^1] : "python3";
        if (python.EndsWith("/env", StringComparison.Ordinal)) python = "python3";
        var (pyCode, json, pyErr) = ProcessRunner.Run(python, ["-c", "import json,sys,yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"], RepoPaths.Root, yaml);
        Assert.True(pyCode == 0, $"{python} could not parse the compose output:\n{pyErr}");
        return JsonNode.Parse(json)!.AsObject();
    }

    private static string[] Strings(JsonNode? node) => node?.AsArray().Select(n => n!.GetValue<string>()).ToArray() ?? [];

    [RequiresToolFact("docker-compose", "docker-compose")]
    public void ComposeScaleProfileValidates()
    {
        var (code, output) = Run("docker-compose", "--profile", "scale", "-f", "docker-compose.yml", "config", "-q");
        Assert.True(code == 0, $"docker-compose --profile scale config failed:\n{output}");
        var (_, profiles) = Run("docker-compose", "-f", "docker-compose.yml", "config", "--profiles");
        Assert.Equal(["scale"], profiles.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    [RequiresToolFact("docker-compose", "docker-compose")]
    public void PlainUpStartsOnlyTheSingleHostStack()
    {
        // Services without a profile are what `docker compose up` starts: the same three as before, unchanged.
        var services = ComposeConfig()["services"]!.AsObject();
        var unprofiled = services.Where(s => s.Value!["profiles"] is null).Select(s => s.Key).Order().ToArray();
        Assert.Equal(["api", "grafana", "prometheus"], unprofiled);
        Assert.Equal(["8080:8080"], services["api"]!["ports"]!.AsArray().Select(p => p is JsonObject o
            ? $"{o["published"]}:{o["target"]}" : p!.GetValue<string>()).ToArray());
        Assert.Contains(Strings(services["prometheus"]!["volumes"]), v => v.Contains("deploy/prometheus.yml:"));
        foreach (var (name, service) in services.Where(s => s.Value!["profiles"] is not null))
            Assert.True(Strings(service!["profiles"]).SequenceEqual(["scale"]), $"{name} is in profiles {service!["profiles"]}");
    }

    [RequiresToolFact("docker-compose", "docker-compose")]
    public void ScaleProfileHasPostgresReplicasNginxAndItsMonitoring()
    {
        var config = ComposeConfig("--profile", "scale");
        var services = config["services"]!.AsObject();
        Assert.Equal(["api", "api-replica", "grafana", "grafana-scale", "nginx", "postgres", "prometheus", "prometheus-scale"],
            services.Select(s => s.Key).Order().ToArray());
        Assert.DoesNotContain(services, s => s.Key.Contains("redis") || (s.Value!["image"]?.GetValue<string>() ?? "").Contains("redis"));

        var pg = services["postgres"]!;
        Assert.Equal("postgres:15", pg["image"]!.GetValue<string>());
        foreach (var key in new[] { "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB" })
            Assert.Equal("piserve", pg["environment"]![key]!.GetValue<string>());
        Assert.Contains("pg_isready", string.Join(' ', Strings(pg["healthcheck"]!["test"])));
        var pgVolume = Strings(pg["volumes"]).Single();
        Assert.EndsWith(":/var/lib/postgresql/data", pgVolume.Split(":rw")[0]);
        Assert.Contains(pgVolume.Split(':')[0], config["volumes"]!.AsObject().Select(v => v.Key));

        var replica = services["api-replica"]!;
        Assert.Equal(services["api"]!["build"]!.ToJsonString(), replica["build"]!.ToJsonString());
        Assert.Null(replica["ports"]); // a fixed host port would stop --scale
        Assert.Null(replica["container_name"]);
        Assert.Equal(3, replica["deploy"]!["replicas"]!.GetValue<int>());
        var env = replica["environment"]!;
        Assert.Equal("postgres", env["PiServe__JobStore__Kind"]!.GetValue<string>());
        Assert.Equal("Host=postgres;Username=piserve;Password=piserve;Database=piserve", env["PiServe__JobStore__ConnectionString"]!.GetValue<string>());
        Assert.Equal("/models", env["PiServe__ModelsRoot"]!.GetValue<string>());
        Assert.Equal("service_healthy", replica["depends_on"]!["postgres"]!["condition"]!.GetValue<string>());

        var nginx = services["nginx"]!;
        Assert.Equal("nginx:1.25", nginx["image"]!.GetValue<string>());
        Assert.Contains(Strings(nginx["volumes"]), v => v.Contains("deploy/nginx/piserve.conf:/etc/nginx/nginx.conf"));
        Assert.Equal("service_healthy", nginx["depends_on"]!["api-replica"]!["condition"]!.GetValue<string>());

        Assert.Contains(Strings(services["prometheus-scale"]!["volumes"]), v => v.Contains("deploy/prometheus-scale.yml:/etc/prometheus/prometheus.yml"));
        Assert.Contains(Strings(services["grafana-scale"]!["volumes"]), v => v.Contains("deploy/grafana/provisioning-scale/datasources:"));
        // The scale Grafana's datasource is prometheus-scale, under the uid the dashboard names.
        string ds = File.ReadAllText(RepoFile("deploy", "grafana", "provisioning-scale", "datasources", "prometheus.yml"));
        Assert.Contains("url: http://prometheus-scale:9090", ds);
        Assert.Contains("uid: prometheus", ds);
        // Host ports do not collide with the single-host stack's.
        var published = services.SelectMany(s => s.Value!["ports"]?.AsArray().Select(p => p is JsonObject o ? o["published"]!.ToString() : p!.GetValue<string>().Split(':')[0]) ?? []).ToList();
        Assert.Equal(published.Count, published.Distinct().Count());
    }

    // ---- nginx -----------------------------------------------------------------------------------

    [RequiresToolFact("nginx", "nginx")]
    public void ShippedNginxConfigPassesNginxT()
    {
        string shipped = RepoFile("deploy", "nginx", "piserve.conf");
        // Unmodified, the file fails here for one reason only: there is no Docker DNS to resolve the replicas.
        var (code, output) = NginxServer.Test(shipped);
        Assert.NotEqual(0, code);
        Assert.Contains("host not found in upstream \"api-replica:8080\"", output);
        Assert.DoesNotContain("[emerg] unknown", output);
        // With the replica name pointed at loopback (one server line each, as DNS would give for one replica) it passes.
        using var dir = new TempDir();
        File.WriteAllText(dir.File("piserve.conf"), NginxServer.Retarget(File.ReadAllText(shipped), ["127.0.0.1:8080"]));
        (code, output) = NginxServer.Test(dir.File("piserve.conf"));
        Assert.True(code == 0, $"nginx -t failed:\n{output}");
        Assert.Contains("test is successful", output);
    }

    [Fact]
    public void NginxConfigRoutesAsDocumented()
    {
        string conf = File.ReadAllText(RepoFile("deploy", "nginx", "piserve.conf"));
        string Block(string head)
        {
            int start = conf.IndexOf(head, StringComparison.Ordinal);
            Assert.True(start >= 0, $"no `{head}` in piserve.conf");
            int depth = 0;
            for (int i = conf.IndexOf('{', start); i < conf.Length; i++)
            {
                if (conf[i] == '{') depth++;
                else if (conf[i] == '}' && --depth == 0) return conf[start..(i + 1)];
            }
            throw new InvalidOperationException("unbalanced braces");
        }
        Assert.Contains("least_conn;", Block("upstream piserve {"));
        Assert.Contains("hash $remote_addr consistent;", Block("upstream piserve_hubs {"));
        Assert.Contains("map $http_upgrade $connection_upgrade", conf);
        Assert.Contains("client_max_body_size 64m;", conf);
        Assert.Contains("proxy_http_version 1.1;", conf);
        Assert.Contains("X-Forwarded-For $proxy_add_x_forwarded_for", conf);
        Assert.Contains("X-Forwarded-Proto $scheme", conf);
        string hubs = Block("location /hubs/ {"), completions = Block("location ~ ^/v1/(chat/)?completions$ {");
        Assert.Contains("proxy_pass http://piserve_hubs;", hubs);
        Assert.Contains("proxy_set_header Connection $connection_upgrade;", hubs);
        Assert.Contains("proxy_pass http://piserve;", completions);
        foreach (var block in new[] { hubs, completions })
        {
            Assert.Contains("proxy_buffering off;", block);
            Assert.Contains("proxy_read_timeout 3600s;", block);
        }
        Assert.DoesNotContain("redis", conf, StringComparison.OrdinalIgnoreCase);
    }

    private NginxServer StartNginx() => new([new Uri(fixture.Host.BaseUrl).Authority, new Uri(second.Host.BaseUrl).Authority]);

    private static async Task<double> RequestsServed(PiServeHostProcess host)
    {
        double total = 0;
        foreach (var line in (await host.Http.GetStringAsync("/metrics")).Split('\n'))
            if (line.StartsWith("piserve_requests_total{", StringComparison.Ordinal) && line.Contains("model=\"tiny\""))
                total += double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        return total;
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    [RequiresToolFact("nginx", "nginx")]
    public async Task NginxSpreadsCompletionsOverTheReplicas()
    {
        using var nginx = StartNginx();
        using var http = new HttpClient { BaseAddress = new Uri(nginx.BaseUrl), Timeout = TimeSpan.FromSeconds(30) };
        double a0 = await RequestsServed(fixture.Host), b0 = await RequestsServed(second.Host);
        for (int i = 0; i < 4; i++)
        {
            var response = await http.PostAsync("/v1/completions", Json($$"""{"model":"tiny","prompt":"Balance {{i}}","max_tokens":4,"ignore_eos":true}"""));
            Assert.True(response.IsSuccessStatusCode, $"{response.StatusCode}: {await response.Content.ReadAsStringAsync()}\n{nginx.Log}");
        }
        double a = await RequestsServed(fixture.Host) - a0, b = await RequestsServed(second.Host) - b0;
        Assert.Equal(4, a + b);
        Assert.True(a >= 1 && b >= 1, $"least_conn sent {a} requests to one replica and {b} to the other");
    }

    [RequiresToolFact("nginx", "nginx")]
    public async Task SseStreamsThroughNginxAndEqualsTheDirectCompletion()
    {
        using var nginx = StartNginx();
        using var http = new HttpClient { BaseAddress = new Uri(nginx.BaseUrl), Timeout = TimeSpan.FromSeconds(30) };
        const string request = """{"model":"tiny","prompt":"In the beginning","max_tokens":24,"temperature":0.8,"seed":11,"ignore_eos":true""";
        using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Json(request + ""","stream":true}""") };
        using var response = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
        Assert.True(response.IsSuccessStatusCode, $"{response.StatusCode}\n{nginx.Log}");
        Assert.StartsWith("text/event-stream", response.Content.Headers.ContentType!.ToString());
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var text = new StringBuilder();
        int events = 0;
        bool done = false;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            if (line == "data: [DONE]") { done = true; break; }
            events++;
            foreach (var c in JsonNode.Parse(line["data: ".Length..])!["choices"]!.AsArray()) text.Append(c!["text"]!.GetValue<string>());
        }
        Assert.True(done, "the stream through nginx did not end with data: [DONE]");
        Assert.True(events >= 24, $"only {events} events");
        var (status, direct, _) = await fixture.Host.PostAsync("/v1/completions", request + "}");
        Assert.Equal(200, status);
        Assert.Equal(direct!["choices"]![0]!["text"]!.GetValue<string>(), text.ToString());
    }

    [RequiresToolFact("nginx", "nginx")]
    public async Task ClosingAStreamAtNginxStopsTheGenerationOnTheReplica()
    {
        using var nginx = StartNginx();
        using (var http = new HttpClient { BaseAddress = new Uri(nginx.BaseUrl) })
        {
            using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = Json("""{"model":"tiny","prompt":"Disconnect me","max_tokens":450,"seed":2,"stream":true,"ignore_eos":true}"""),
            };
            var response = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
            var stream = await response.Content.ReadAsStreamAsync();
            Assert.True(await stream.ReadAsync(new byte[256]) > 0);
            response.Dispose();
        }
        // nginx closes the upstream connection when the client goes; both replicas are idle soon after.
        var clock = Stopwatch.StartNew();
        while (true)
        {
            int running = 0;
            foreach (var host in new[] { fixture.Host, second.Host })
            {
                var s = JsonNode.Parse(await host.Http.GetStringAsync("/v1/models/tiny/scheduler"))!;
                running += s["running"]!.GetValue<int>() + s["waiting"]!.GetValue<int>();
            }
            if (running == 0) break;
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), "a replica still generates 5 s after the client closed its stream at nginx");
            await Task.Delay(100);
        }
    }

    [RequiresToolFact("nginx", "nginx")]
    public async Task SignalRWorksThroughNginxOnEveryTransport()
    {
        // Negotiate and the transport's requests must reach one replica: with round robin or
        // least_conn on /hubs/ they would alternate between these two hosts and the connection would fail.
        using var nginx = StartNginx();
        foreach (var transport in new[] { HttpTransportType.WebSockets, HttpTransportType.ServerSentEvents, HttpTransportType.LongPolling })
        {
            await using var connection = new HubConnectionBuilder()
                .WithUrl(nginx.BaseUrl + "/hubs/generation", o => o.Transports = transport)
                .Build();
            await connection.StartAsync();
            var events = new List<JsonElement>();
            await foreach (var e in connection.StreamAsync<JsonElement>("StreamCompletion",
                               new { model = "tiny", prompt = "Let there be light", max_tokens = 8, temperature = 0.8, seed = 5, ignore_eos = true }))
                events.Add(e);
            Assert.True(events.Count(e => e.GetProperty("type").GetString() == "token") == 8, $"{transport}: {JsonSerializer.Serialize(events)}\n{nginx.Log}");
            Assert.Equal("finish", events[^1].GetProperty("type").GetString());
            await connection.StopAsync();
        }
    }

    // ---- Prometheus and Grafana ------------------------------------------------------------------

    [RequiresToolFact("promtool", "prometheus")]
    public void ScalePrometheusConfigValidates()
    {
        var (code, output) = Run(ProcessRunner.FindOnPath("promtool")!, "check", "config", "deploy/prometheus-scale.yml");
        Assert.True(code == 0, $"promtool check config failed:\n{output}");
        string config = File.ReadAllText(RepoFile("deploy", "prometheus-scale.yml"));
        Assert.Matches(@"dns_sd_configs:\s*\n\s*- names: \[""api-replica""\]\s*\n\s*type: A\s*\n\s*port: 8080", config);
        Assert.Matches(@"source_labels: \[__address__\]\s*\n\s*target_label: instance", config);
    }

    private static JsonObject Dashboard => JsonNode.Parse(File.ReadAllText(RepoFile("deploy", "grafana", "dashboards", "piserve.json")))!.AsObject();

    [Fact]
    public void DashboardHasTheInstanceVariable()
    {
        var list = Dashboard["templating"]!["list"]!.AsArray();
        Assert.Equal("model", list[0]!["name"]!.GetValue<string>());
        var instance = list.Single(v => v!["name"]!.GetValue<string>() == "instance")!;
        Assert.Equal("query", instance["type"]!.GetValue<string>());
        Assert.Equal("label_values(piserve_requests_total, instance)", instance["query"]!["query"]!.GetValue<string>());
        Assert.True(instance["multi"]!.GetValue<bool>());
        Assert.True(instance["includeAll"]!.GetValue<bool>());
        Assert.Equal(".*", instance["allValue"]!.GetValue<string>());
    }

    [GeneratedRegex(@"(piserve_[a-z_]+)(\{[^}]*\})?")]
    private static partial Regex Selector();

    [Fact]
    public void EveryDashboardQueryFiltersByInstanceAndAggregatesOverIt()
    {
        foreach (var panel in Dashboard["panels"]!.AsArray())
            foreach (var target in panel!["targets"]!.AsArray())
            {
                string expr = target!["expr"]!.GetValue<string>(), title = panel["title"]!.GetValue<string>();
                Assert.Contains("$instance", expr);
                foreach (Match m in Selector().Matches(expr))
                    Assert.True(m.Groups[2].Value.Contains("instance=~\"$instance\""), $"{title}: {m.Value} does not filter by instance");
                // One series per model (or state) over all selected replicas: summed, quantiles over summed buckets;
                // jobs by state is the shared store's count, which every replica reports: the max, not the sum.
                if (expr.Contains("piserve_eval_jobs{", StringComparison.Ordinal)) Assert.StartsWith("max by (state)", expr);
                else Assert.True(expr.StartsWith("sum by (", StringComparison.Ordinal) || expr.StartsWith("histogram_quantile(", StringComparison.Ordinal), $"{title}: {expr}");
                if (expr.StartsWith("histogram_quantile(", StringComparison.Ordinal)) Assert.Contains("sum by (le", expr);
            }
        var titles = Dashboard["panels"]!.AsArray().Select(p => p!["title"]!.GetValue<string>()).ToList();
        Assert.Contains("Tokens per second by instance", titles);
        Assert.Contains("Running and waiting requests by instance", titles);
    }
}
