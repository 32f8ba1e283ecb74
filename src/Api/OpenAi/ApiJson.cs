using System.Text.Json;
using System.Text.Json.Serialization;

namespace PiServe.Api.OpenAi;

/// <summary>
/// How responses are serialized: every property written, nulls included, as OpenAI's responses do;
/// text as it is (no \u0027 for an apostrophe, no \uXXXX for "é"), as vLLM writes it — the bodies
/// are JSON, never embedded in HTML.
/// </summary>
public static class ApiJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
}
